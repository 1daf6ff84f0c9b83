"""Lint rules of the identifiers family: names PostgreSQL would truncate to 63 bytes."""

from __future__ import annotations

import pytest
from lint_support import lint, rules

LONG = "invoices_customer_id_status_created_at_amount_currency_note_idx_v2"  # 66 bytes
assert len(LONG) > 63


@pytest.mark.parametrize(
    "sql",
    [
        f"CREATE TABLE {{{{schema}}}}.{LONG} (id int);",
        f"CREATE TABLE {{{{schema}}}}.t (id int, {LONG} int);",
        f"ALTER TABLE {{{{schema}}}}.invoices ADD CONSTRAINT {LONG} CHECK (amount > 0) NOT VALID;",
        f'CREATE SEQUENCE {{{{schema}}}}."{LONG.upper()}";',
        f"ALTER TABLE {{{{schema}}}}.invoices RENAME COLUMN note TO {LONG};",
    ],
)
def test_names_over_63_bytes(sql: str) -> None:
    findings = [f for f in lint(sql) if f.rule == "identifier-too-long"]
    assert len(findings) == 1
    assert "66 bytes" in findings[0].message
    assert LONG[:63] in findings[0].message.lower()


def test_bytes_not_characters() -> None:
    name = "é" * 32  # 32 characters, 64 bytes
    findings = lint(f'CREATE TABLE {{{{schema}}}}."{name}" (id int);')
    assert [f.rule for f in findings] == ["identifier-too-long"]
    assert rules(f'CREATE TABLE {{{{schema}}}}."{"é" * 31}" (id int);') == []


def test_the_schema_placeholder_does_not_lengthen_a_name_and_each_name_is_said_once() -> None:
    name = "x" * 63
    assert rules(f"CREATE TABLE {{{{schema}}}}.{name} (id int);") == []
    sql = f"""
    CREATE TABLE {{{{schema}}}}.{LONG} (id int);
    CREATE INDEX {LONG}_i ON {{{{schema}}}}.{LONG} (id);
    """
    findings = lint(sql)
    assert [(f.rule, f.line) for f in findings] == [
        ("identifier-too-long", 2),
        ("identifier-too-long", 3),
        ("identifier-too-long", 3),
    ]
