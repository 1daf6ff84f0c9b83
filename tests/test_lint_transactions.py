"""Lint rules of the transactions family: enum values, unbatched DML, transaction control."""

from __future__ import annotations

import pytest
from lint_support import lint, rules


def test_enum_value_use_is_fine_without_a_transaction() -> None:
    sql = """
    ALTER TYPE {{schema}}.invoice_status_enum ADD VALUE IF NOT EXISTS 'void';
    UPDATE {{schema}}.invoices SET status = 'void' WHERE id = 1;
    """
    assert "enum-value-used-same-migration" in rules(sql)
    assert "enum-value-used-same-migration" not in rules(sql, transactional=False)
    findings = [f for f in lint(sql) if f.rule == "enum-value-used-same-migration"]
    assert findings[0].line == 3


def test_unbatched_dml_needs_ddl_in_the_same_migration() -> None:
    assert rules("UPDATE {{schema}}.invoices SET note = '' WHERE note IS NULL;") == []
    assert rules(
        """
        DELETE FROM {{schema}}.invoices WHERE amount = 0;
        ALTER TABLE {{schema}}.invoices ALTER COLUMN amount SET DEFAULT 1;
        """
    ) == ["unbatched-dml"]


@pytest.mark.parametrize(
    "statement",
    ["BEGIN", "START TRANSACTION", "COMMIT", "END", "ROLLBACK", "SAVEPOINT s", "RELEASE s"],
)
def test_transaction_control(statement: str) -> None:
    assert rules(f"{statement};") == ["transaction-control"]
