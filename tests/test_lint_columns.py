"""Lint rules of the columns family: ADD COLUMN rewrites, ALTER COLUMN TYPE coercions."""

from __future__ import annotations

import pytest
from lint_support import lint, rules, state

from tenantmig.lint import blocking


@pytest.mark.parametrize(
    "column",
    [
        "token uuid DEFAULT gen_random_uuid()",
        "token uuid DEFAULT uuid_generate_v4()",
        "r float8 DEFAULT random()",
        "at timestamptz DEFAULT clock_timestamp()",
        "t text DEFAULT timeofday()",
        "n bigint DEFAULT nextval('{{schema}}.seq')",
        "n bigint DEFAULT 10 + nextval('{{schema}}.seq')",
        "n bigserial",
        "n bigint GENERATED ALWAYS AS IDENTITY",
        "total numeric GENERATED ALWAYS AS (amount * 2) STORED",
    ],
)
def test_add_column_that_rewrites(column: str) -> None:
    assert rules(f"ALTER TABLE {{{{schema}}}}.invoices ADD COLUMN {column};") == [
        "add-column-volatile-default"
    ]


@pytest.mark.parametrize(
    "column",
    [
        "seen_at timestamptz DEFAULT now()",
        "seen_at timestamptz NOT NULL DEFAULT CURRENT_TIMESTAMP",
        "kind text NOT NULL DEFAULT 'plain'",
        "qty int DEFAULT 0",
        "note2 text",
    ],
)
def test_add_column_without_rewrite(column: str) -> None:
    assert rules(f"ALTER TABLE {{{{schema}}}}.invoices ADD COLUMN {column};") == []


@pytest.mark.parametrize(
    ("column", "new_type"),
    [
        ("email", "varchar(50)"),
        ("email", "varchar(255)"),
        ("email", "varchar"),
        ("email", "text"),
        ("note", "varchar"),
        ("amount", "numeric(12, 2)"),
        ("amount", "numeric"),
    ],
)
def test_binary_coercible_type_changes_are_safe(column: str, new_type: str) -> None:
    table = "customers" if column == "email" else "invoices"
    sql = f"ALTER TABLE {{{{schema}}}}.{table} ALTER COLUMN {column} TYPE {new_type};"
    assert rules(sql) == []


@pytest.mark.parametrize(
    ("table", "column", "new_type"),
    [
        ("customers", "email", "varchar(20)"),
        ("customers", "email", "int USING email::int"),
        ("customers", "id", "int"),
        ("invoices", "note", "varchar(100)"),
        ("invoices", "amount", "numeric(8, 2)"),
        ("invoices", "amount", "numeric(12, 4)"),
        ("invoices", "status", "varchar(50)"),
        ("invoices", "note", 'text COLLATE "C"'),
        ("invoices", "unknown_column", "varchar(255)"),
    ],
)
def test_type_changes_that_rewrite(table: str, column: str, new_type: str) -> None:
    sql = f"ALTER TABLE {{{{schema}}}}.{table} ALTER COLUMN {column} TYPE {new_type};"
    findings = lint(sql)
    assert [(f.rule, f.severity) for f in findings] == [("alter-column-type", "error")]
    assert "5-step swap" in findings[0].message


def test_timestamp_to_timestamptz_is_a_warning() -> None:
    findings = lint("ALTER TABLE {{schema}}.customers ALTER COLUMN created_at TYPE timestamptz;")
    assert [(f.rule, f.severity) for f in findings] == [("alter-column-type", "warning")]
    assert "TimeZone" in findings[0].message
    assert blocking(findings) == []


def test_column_types_follow_renames_and_type_changes() -> None:
    earlier = state(
        "ALTER TABLE {{schema}}.customers ALTER COLUMN email TYPE varchar(255);",
        "ALTER TABLE {{schema}}.customers RENAME COLUMN email TO mail;",
    )
    assert rules("ALTER TABLE {{schema}}.customers ALTER mail TYPE varchar(300);",
                 earlier=earlier) == []
    assert rules("ALTER TABLE {{schema}}.customers ALTER mail TYPE varchar(100);",
                 earlier=earlier) == ["alter-column-type"]
