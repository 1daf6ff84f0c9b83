"""The pattern pages in ``docs/patterns/``: one per pattern, all listed in the index, and each
example exactly what ``tenantmig new`` prints and writes. No database."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from tenantmig.cli import main
from tenantmig.templates import PATTERNS

DOCS = Path(__file__).resolve().parent.parent / "docs" / "patterns"
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]*)\)")
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.M | re.S)


def page(name: str) -> str:
    return (DOCS / f"{name}.md").read_text(encoding="utf-8")


def section(text: str, title: str) -> str:
    """The body of the ``## title`` section of *text*."""
    _, found, rest = text.partition(f"\n## {title}\n")
    assert found, f"no section {title!r}"
    return rest.split("\n## ", 1)[0]


def anchor(title: str) -> str:
    """The id MkDocs gives a heading."""
    return re.sub(r"[\s]+", "-", re.sub(r"[^\w\s-]", "", title).strip().lower())


def test_every_pattern_has_a_page_and_there_is_no_other() -> None:
    assert {p.stem for p in DOCS.glob("*.md")} == set(PATTERNS) | {"index"}
    for pattern in PATTERNS.values():
        assert pattern.doc == f"docs/patterns/{pattern.name}.md"
        assert (DOCS.parent.parent / pattern.doc).is_file()


def test_the_index_lists_every_pattern_with_its_summary() -> None:
    index = page("index")
    listed = re.findall(r"^- \[([a-z-]+)\]\(([a-z-]+)\.md\): (.*)$", index, re.M)
    assert sorted(listed) == sorted((p.name, p.name, p.summary) for p in PATTERNS.values())
    corrections = section(index, "Corrections to commonly copied zero-downtime advice")
    for topic in ("binary-coercible", "commit", "VALIDATE", "CONCURRENTLY", "INVALID",
                  "INCLUDING ALL", "FOREIGN KEY", "ADD VALUE", "search_path"):
        assert topic in corrections, topic


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_a_page_explains_its_pattern(name: str) -> None:
    text = page(name)
    assert text.startswith(f"# {name}\n")
    for title in ("The problem", "What the pattern writes", "Example", "Parameters"):
        section(text, title)
    for param in PATTERNS[name].params:
        assert f"`{param.name}`" in section(text, "Parameters"), param.name


def test_pages_cite_nothing_outside_and_link_only_to_each_other() -> None:
    headings = {
        path.stem: {anchor(h) for h in re.findall(r"^#+ (.*)$", path.read_text(), re.M)}
        for path in DOCS.glob("*.md")
    }
    for path in DOCS.glob("*.md"):
        text = path.read_text(encoding="utf-8")
        assert "NOTES-ON-SEED" not in text and not re.search(r"\bseed", text, re.I), path.name
        for target in LINK.findall(text):
            name, _, fragment = target.partition("#")
            assert re.fullmatch(r"[a-z-]+\.md", name), f"{path.name}: link {target}"
            assert name[:-3] in headings, f"{path.name}: {target} does not exist"
            assert not fragment or fragment in headings[name[:-3]], f"{path.name}: {target}"


@pytest.mark.parametrize("name", sorted(PATTERNS))
def test_the_example_is_what_tenantmig_new_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
    name: str,
) -> None:
    [schema] = [body for lang, body in FENCE.findall(section(page("index"), "The example schema"))
                if lang == "sql"]
    example = section(page(name), "Example")
    blocks = FENCE.findall(example)
    [console] = [body for lang, body in blocks if lang == "console"]
    command, *printed = console.splitlines()
    assert command.startswith("$ tenantmig new ")
    argv = shlex.split(command[2:])[1:]
    assert argv[argv.index("--pattern") + 1] == name

    (tmp_path / "migrations").mkdir()
    (tmp_path / "migrations" / "V1__create_tables.sql").write_text(schema, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 0
    out, err = capsys.readouterr()
    assert out.splitlines() == printed, err

    written = [p for p in (tmp_path / "migrations").iterdir() if p.name != "V1__create_tables.sql"]
    lines = {line.strip() for p in written for line in p.read_text().splitlines()}
    excerpts = [body for lang, body in blocks if lang in ("sql", "python")]
    assert excerpts
    for body in excerpts:
        for line in body.splitlines():
            assert not line.strip() or line.strip() in lines, line
