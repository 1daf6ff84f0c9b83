"""Lint rules of the domains family: ALTER DOMAIN ... ADD CONSTRAINT and CREATE DOMAIN CHECK."""

from __future__ import annotations

import pytest
from lint_support import lint, rules

from tenantmig.lint import blocking


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        (
            "ALTER DOMAIN {{schema}}.positive ADD CONSTRAINT p CHECK (VALUE > 0);",
            "add it NOT VALID",
        ),
        (
            "ALTER DOMAIN {{schema}}.positive ADD CHECK (VALUE > 0);",
            "add it NOT VALID",
        ),
        (
            "ALTER DOMAIN {{schema}}.positive SET NOT NULL;",
            "CHECK (VALUE IS NOT NULL) NOT VALID",
        ),
    ],
)
def test_domain_constraints_that_scan_every_column(sql: str, says: str) -> None:
    findings = lint(sql)
    assert [f.rule for f in findings] == ["domain-constraint-not-valid"]
    assert says in findings[0].message
    assert "{{schema}}.positive" in findings[0].message


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER DOMAIN {{schema}}.positive ADD CONSTRAINT p CHECK (VALUE > 0) NOT VALID;",
        "ALTER DOMAIN {{schema}}.positive VALIDATE CONSTRAINT p;",
        "ALTER DOMAIN {{schema}}.positive DROP CONSTRAINT p;",
        "ALTER DOMAIN {{schema}}.positive DROP NOT NULL;",
    ],
)
def test_domain_changes_without_a_scan(sql: str) -> None:
    assert rules(sql) == []


def test_create_domain_with_a_check_is_a_warning() -> None:
    findings = lint("CREATE DOMAIN {{schema}}.positive AS numeric CHECK (VALUE > 0);")
    assert [(f.rule, f.severity) for f in findings] == [("domain-with-check", "warning")]
    assert blocking(findings) == []
    assert rules("CREATE DOMAIN {{schema}}.label AS text NOT NULL;") == []
    assert rules("CREATE DOMAIN {{schema}}.label AS text DEFAULT '';") == []
