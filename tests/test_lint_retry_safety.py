"""Lint rules of the retry-safety family: what a retry of a half-done no-transaction migration
runs again must cope with finding its work done."""

from __future__ import annotations

import pytest
from lint_support import lint, rules

from tenantmig.lint import blocking

T = "{{schema}}.invoices"


@pytest.mark.parametrize(
    ("sql", "fix"),
    [
        (f"ALTER TABLE {T} ADD COLUMN currency char(3);", "ADD COLUMN IF NOT EXISTS"),
        (f"ALTER TABLE {T} DROP COLUMN note;", "DROP COLUMN IF EXISTS"),
        (f"ALTER TABLE {T} DROP CONSTRAINT invoices_x;", "DROP CONSTRAINT IF EXISTS"),
        (f"ALTER TABLE {T} ADD CONSTRAINT c CHECK (amount > 0) NOT VALID;", "DO block"),
        ("CREATE TABLE {{schema}}.t (id int);", "CREATE TABLE IF NOT EXISTS"),
        ("CREATE TABLE {{schema}}.t AS SELECT 1 AS one;", "CREATE TABLE AS IF NOT EXISTS"),
        ("CREATE SEQUENCE {{schema}}.s;", "CREATE SEQUENCE IF NOT EXISTS"),
        ("CREATE SCHEMA scratch;", "CREATE SCHEMA IF NOT EXISTS"),
        ("CREATE VIEW {{schema}}.v AS SELECT 1;", "CREATE OR REPLACE VIEW"),
        (
            "CREATE FUNCTION {{schema}}.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
            "CREATE OR REPLACE FUNCTION",
        ),
        ("CREATE TYPE {{schema}}.e AS ENUM ('a');", "no IF NOT EXISTS"),
        ("CREATE TYPE {{schema}}.c AS (a int);", "no IF NOT EXISTS"),
        ("CREATE DOMAIN {{schema}}.d AS text;", "no IF NOT EXISTS"),
        ("CREATE INDEX invoices_note_idx ON {{schema}}.t (note);", "IF NOT EXISTS"),
        ("DROP TABLE {{schema}}.t;", "DROP TABLE IF EXISTS"),
        ("DROP INDEX {{schema}}.i;", "DROP INDEX IF EXISTS"),
        ("DROP TYPE {{schema}}.e;", "DROP TYPE IF EXISTS"),
        ("DROP FUNCTION {{schema}}.f();", "DROP FUNCTION IF EXISTS"),
        (f"ALTER TABLE {T} RENAME COLUMN note TO memo;", "the old name is gone"),
        (
            f"CREATE TRIGGER t BEFORE INSERT ON {T} FOR EACH ROW "
            "EXECUTE FUNCTION {{schema}}.f();",
            "CREATE TRIGGER t on {{schema}}.invoices without OR REPLACE",
        ),
        ("CREATE EXTENSION pgcrypto;", "CREATE EXTENSION pgcrypto without IF NOT EXISTS"),
        ("CREATE TYPE {{schema}}.r AS RANGE (subtype = int4);", "CREATE TYPE {{schema}}.r ("),
        (f"CREATE POLICY p ON {T} USING (true);", "CREATE POLICY p on {{schema}}.invoices"),
    ],
)
def test_statements_a_retry_breaks(sql: str, fix: str) -> None:
    findings = [f for f in lint(sql, transactional=False) if f.rule == "not-retryable"]
    assert len(findings) == 1, findings
    assert findings[0].severity == "warning"
    assert fix in findings[0].message
    assert "transactional migration" in findings[0].message
    # in a transaction a failure rolls everything back: a retry starts clean
    assert "not-retryable" not in rules(sql)


@pytest.mark.parametrize(
    "sql",
    [
        f"ALTER TABLE {T} ADD COLUMN IF NOT EXISTS currency char(3);",
        f"ALTER TABLE {T} DROP COLUMN IF EXISTS note;",
        f"ALTER TABLE {T} DROP CONSTRAINT IF EXISTS invoices_x;",
        f"ALTER TABLE {T} ALTER COLUMN note SET DEFAULT '';",
        "CREATE TABLE IF NOT EXISTS {{schema}}.t (id int);",
        "CREATE SEQUENCE IF NOT EXISTS {{schema}}.s;",
        "CREATE OR REPLACE VIEW {{schema}}.v AS SELECT 1;",
        "DROP TABLE IF EXISTS {{schema}}.t;",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON {{schema}}.invoices (note);",
        "SELECT 1;",
    ],
)
def test_idempotent_forms_are_retryable(sql: str) -> None:
    assert "not-retryable" not in rules(sql, transactional=False)


def test_concurrent_indexes_keep_their_own_rule() -> None:
    sql = "DROP INDEX CONCURRENTLY {{schema}}.i;"
    assert rules(sql, transactional=False) == ["concurrently-not-retryable"]
    sql = "CREATE INDEX CONCURRENTLY i ON {{schema}}.invoices (note);"
    assert rules(sql, transactional=False) == ["concurrently-not-retryable"]


def test_it_never_blocks() -> None:
    findings = lint("CREATE TABLE {{schema}}.t (id int);", transactional=False)
    assert [f.rule for f in findings] == ["not-retryable"]
    assert blocking(findings) == []
