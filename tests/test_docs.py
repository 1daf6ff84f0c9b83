"""The README stays a front door and the docs site stays whole (no database).

``mkdocs build --strict`` in CI checks the links between pages; these tests check what it
does not: the README's length and links, that the nav and the pages agree both ways, and
what must never appear in what users read.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
README = ROOT / "README.md"
README_MAX_LINES = 150

# Versioned names of the server-side functions: they change by design, so one page owns them.
VERSIONED_NAMES = re.compile(r"\b(apply|claim|expect)_v\d")
VERSIONED_NAMES_PAGE = DOCS / "how-it-works.md"
# Users have neither the project's private notes nor the document the project grew from.
PRIVATE = re.compile(r"notes-on-seed|\bseed\b", re.IGNORECASE)

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def pages() -> list[Path]:
    return sorted(DOCS.rglob("*.md"))


def user_facing() -> list[Path]:
    return [README, *pages()]


def nav_entries(node: Any) -> list[str]:
    """Every page path in a mkdocs ``nav`` (a list of strings and one-key mappings)."""
    if isinstance(node, str):
        return [] if "://" in node else [node]
    if isinstance(node, list):
        return [path for item in node for path in nav_entries(item)]
    if isinstance(node, dict):
        return [path for value in node.values() for path in nav_entries(value)]
    raise TypeError(f"unexpected nav entry {node!r}")


def nav() -> list[str]:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    return nav_entries(config["nav"])


def test_readme_is_short() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines; keep it under {README_MAX_LINES} and move "
        "reference material to a page in docs/"
    )


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = README.read_text(encoding="utf-8")
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    command = ".venv/bin/python -m pytest"
    assert f"&& {command}\n" in readme
    assert f"\n{command}\n" in ci


def test_readme_links_exist() -> None:
    for target in _LINK.findall(README.read_text(encoding="utf-8")):
        if "://" in target or target.startswith("#"):
            continue
        path = target.split("#", 1)[0]
        assert (ROOT / path).exists(), f"README.md links to {target}, which does not exist"


def test_every_page_is_in_the_nav() -> None:
    listed = set(nav())
    missing = [str(p.relative_to(DOCS)) for p in pages() if str(p.relative_to(DOCS)) not in listed]
    assert not missing, f"pages missing from the nav in mkdocs.yml: {missing}"


def test_every_nav_entry_exists() -> None:
    entries = nav()
    assert len(entries) == len(set(entries)), "a page is listed twice in the nav"
    absent = [entry for entry in entries if not (DOCS / entry).is_file()]
    assert not absent, f"nav entries in mkdocs.yml with no page: {absent}"


def test_nav_order() -> None:
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))
    titles = [next(iter(item)) if isinstance(item, dict) else item for item in config["nav"]]
    assert titles == [
        "Home", "Concepts", "Migration files", "Other tools' folders", "Command line",
        "Configuration",
        "Safety checks", "Patterns", "Python API", "How it works", "Performance",
        "Development",
    ]


@pytest.mark.parametrize("path", user_facing(), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_private_documents(path: Path) -> None:
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if PRIVATE.search(line)
    ]
    assert not hits, "users do not have this document; say it in our own words:\n" + "\n".join(
        hits
    )


@pytest.mark.parametrize("path", user_facing(), ids=lambda p: str(p.relative_to(ROOT)))
def test_versioned_names_only_in_how_it_works(path: Path) -> None:
    if path == VERSIONED_NAMES_PAGE:
        return
    hits = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
        if VERSIONED_NAMES.search(line)
    ]
    assert not hits, (
        "versioned server function names change by design; only docs/how-it-works.md "
        "names them:\n" + "\n".join(hits)
    )


def test_how_it_works_names_the_server_functions() -> None:
    # Guards the two tests above against a pattern that matches nothing.
    text = VERSIONED_NAMES_PAGE.read_text(encoding="utf-8")
    assert VERSIONED_NAMES.search(text)
