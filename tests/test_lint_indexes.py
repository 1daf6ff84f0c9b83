"""Lint rules of the indexes family: CONCURRENTLY, in and out of a transaction."""

from __future__ import annotations

import pytest
from lint_support import lint, rules

from tenantmig.lint import blocking


def test_concurrently_forms_in_a_transaction() -> None:
    sql = """
    CREATE INDEX CONCURRENTLY IF NOT EXISTS i1 ON {{schema}}.invoices (note);
    DROP INDEX CONCURRENTLY IF EXISTS {{schema}}.i2;
    REINDEX INDEX CONCURRENTLY {{schema}}.i3;
    ALTER TABLE {{schema}}.invoices DETACH PARTITION {{schema}}.invoices_2020 CONCURRENTLY;
    """
    assert rules(sql) == ["concurrently-in-transaction"] * 4
    # a no-transaction file runs statement by statement: several are fine (an interrupted
    # DETACH ... CONCURRENTLY is left pending: a warning of the maintenance family)
    assert rules(sql, transactional=False) == ["detach-partition-pending"]


@pytest.mark.parametrize(
    ("sql", "needs"),
    [
        ("CREATE INDEX CONCURRENTLY i1 ON {{schema}}.invoices (note);", "IF NOT EXISTS (tenantmig"),
        ("CREATE UNIQUE INDEX CONCURRENTLY ON {{schema}}.invoices (note);", "name the index"),
        ("DROP INDEX CONCURRENTLY {{schema}}.i2;", "DROP INDEX CONCURRENTLY IF EXISTS"),
    ],
)
def test_concurrently_not_retryable_is_a_warning_with_the_robust_form(
    sql: str, needs: str
) -> None:
    findings = lint(sql, transactional=False)
    assert [(f.rule, f.severity) for f in findings] == [("concurrently-not-retryable", "warning")]
    assert needs in findings[0].message
    assert blocking(findings) == []
    # in a transaction the statement is refused outright; a retry there starts clean
    assert rules(sql) == ["concurrently-in-transaction"]
