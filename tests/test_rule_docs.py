"""The rule pages in docs/rules/ and the linter's registry list exactly the same rules, each
with a tripping example in the tests; and the linter package has no import cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest
from lint_support import state
from test_lint import PAIRS

from tenantmig.lint import RULES, lint_sql

ROOT = Path(__file__).resolve().parent.parent
RULE_DOCS = ROOT / "docs" / "rules"
LINT_PACKAGE = ROOT / "tenantmig" / "lint"
_LINK = re.compile(r"\]\(([^)]+)\)")


def pages() -> dict[str, str]:
    return {p.stem: p.read_text(encoding="utf-8") for p in RULE_DOCS.glob("*.md")}


def test_one_page_per_rule_and_no_page_without_a_rule() -> None:
    # index: the list of rules; coverage: how they map to other linters' checks
    assert sorted(set(pages()) - {"index", "coverage"}) == sorted(RULES)


def test_the_index_lists_every_rule_once_with_its_severity() -> None:
    index = pages()["index"]
    rows = re.findall(r"^\| \[`([a-z-]+)`\]\(([a-z-]+)\.md\) \| (\w+) \|", index, re.M)
    assert sorted(rule for rule, _, _ in rows) == sorted(RULES)
    for rule, target, severity in rows:
        assert target == rule
        assert severity == RULES[rule].severity


@pytest.mark.parametrize("rule", sorted(RULES))
def test_each_page_has_the_parts_a_reader_needs(rule: str) -> None:
    text = pages()[rule]
    assert text.startswith(f"# `{rule}`\n")
    for heading in (
        "## What is dangerous",
        "## The safe pattern",
        "## PostgreSQL versions",
        "## Accepting it on purpose",
    ):
        assert heading in text
    assert re.search(r"```sql\n[^`]*\{\{schema\}\}", text)
    if rule != "unused-allow":  # an allow comment cannot cover the finding about itself
        assert f"-- tenantmig:allow {rule} " in text


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_safe_pattern_on_each_page_passes_the_linter(rule: str) -> None:
    """The example under "The safe pattern", one migration per ``-- Vn`` line, is clean
    (apart from what it allows on purpose) after the tests' BASE migration."""
    text = pages()[rule]
    found = re.search(r"## The safe pattern.*?```sql\n(.*?)```", text, re.S)
    assert found
    earlier = state()
    for migration in re.split(r"^-- V\d+.*\n", found.group(1), flags=re.M):
        if not migration.strip():
            continue
        transactional = "-- tenantmig:no-transaction" not in migration
        findings = lint_sql(migration, transactional=transactional, earlier=earlier)
        assert [f for f in findings if f.allowed is None] == []
        earlier = earlier.after(migration, transactional=transactional)


def test_pages_link_only_to_pages_in_docs_rules() -> None:
    for name, text in pages().items():
        for target in _LINK.findall(text):
            assert "/" not in target and ":" not in target, (name, target)
            assert (RULE_DOCS / target).is_file(), (name, target)


def test_every_rule_has_a_tripping_example_in_the_tests() -> None:
    # PAIRS in test_lint.py trips every rule, unparsable and unused-allow included: none
    # needs an exception.
    assert {rule for rule, *_ in PAIRS} == set(RULES)


def test_rules_have_a_summary_and_a_known_severity() -> None:
    for rule_id, rule in RULES.items():
        assert rule.id == rule_id
        assert rule.summary and not rule.summary.startswith("warning")
        assert rule.severity in ("error", "warning")


def _local_imports(path: Path) -> set[str]:
    """The modules of tenantmig.lint that *path* imports (relative imports of the package)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            if node.module:
                found.add(node.module)
            else:
                found.update(alias.name for alias in node.names)
    return found


def test_the_lint_package_has_no_import_cycle() -> None:
    graph = {p.stem: _local_imports(p) for p in LINT_PACKAGE.glob("*.py") if p.stem != "__init__"}
    done: set[str] = set()

    def visit(module: str, path: tuple[str, ...]) -> None:
        assert module not in path, " -> ".join((*path, module))
        if module in done:
            return
        for imported in graph.get(module, ()):
            visit(imported, (*path, module))
        done.add(module)

    for module in graph:
        visit(module, ())
