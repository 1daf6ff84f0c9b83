"""Lint rules of the shared family: a tenant migration must not change a shared schema."""

from __future__ import annotations

import pytest
from lint_support import lint, rules

SHARED = {"shared_schemas": ["shared"]}


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE {{schema}}.invoices SET SCHEMA shared;",
        "ALTER SEQUENCE {{schema}}.s SET SCHEMA shared;",
        "ALTER TYPE {{schema}}.invoice_status_enum SET SCHEMA shared;",
        "ALTER FUNCTION {{schema}}.f() SET SCHEMA shared;",
    ],
)
def test_set_schema_into_a_shared_schema(sql: str) -> None:
    findings = lint(sql, **SHARED)
    assert [f.rule for f in findings] == ["set-schema-shared"]
    assert "42P07" in findings[0].message


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        ("CREATE TABLE shared.plans (id bigint PRIMARY KEY);", "CREATE TABLE shared.plans"),
        ("ALTER TABLE shared.plans ADD COLUMN tier text;", "ALTER TABLE shared.plans"),
        ("DROP TABLE IF EXISTS shared.plans;", "DROP of shared.plans"),
        ("CREATE INDEX CONCURRENTLY IF NOT EXISTS p ON shared.plans (id);", "CREATE INDEX on"),
        ("CREATE VIEW shared.v AS SELECT 1;", "CREATE VIEW shared.v"),
        ("CREATE SEQUENCE shared.s;", "CREATE SEQUENCE shared.s"),
        ("CREATE TYPE shared.e AS ENUM ('a');", "CREATE TYPE shared.e"),
        ("ALTER TYPE shared.e ADD VALUE IF NOT EXISTS 'b';", "ALTER TYPE shared.e"),
        (
            "CREATE FUNCTION shared.f() RETURNS int LANGUAGE sql AS $$ SELECT 1 $$;",
            "CREATE FUNCTION shared.f",
        ),
        ("ALTER TABLE shared.plans RENAME TO tiers;", "RENAME of shared.plans"),
        ("COMMENT ON TABLE shared.plans IS 'x';", "COMMENT ON shared.plans"),
        ("TRUNCATE shared.plans;", "TRUNCATE shared.plans"),
    ],
)
def test_ddl_on_a_shared_schema(sql: str, says: str) -> None:
    findings = [f for f in lint(sql, transactional=False, **SHARED)]
    found = [f for f in findings if f.rule == "shared-schema-ddl"]
    assert len(found) == 1, findings
    assert says in found[0].message


@pytest.mark.parametrize(
    "sql",
    [
        "ALTER TABLE {{schema}}.invoices ADD CONSTRAINT f FOREIGN KEY (customer_id) "
        "REFERENCES shared.plans (id) NOT VALID;",
        "CREATE TABLE {{schema}}.plans_copy AS SELECT * FROM shared.plans;",
        "CREATE VIEW {{schema}}.v AS SELECT * FROM shared.plans;",
        "ALTER TABLE {{schema}}.invoices SET SCHEMA {{schema}};",
    ],
)
def test_references_to_a_shared_schema_are_fine(sql: str) -> None:
    assert [r for r in rules(sql, **SHARED) if r.startswith(("shared", "set-schema"))] == []


def test_without_shared_schemas_other_tenant_schema_speaks() -> None:
    assert rules("ALTER TABLE shared.plans ADD COLUMN tier text;") == ["other-tenant-schema"]
