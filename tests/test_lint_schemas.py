"""Lint rules of the schemas family: unqualified names and other schemas."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import MakeMigrations
from lint_support import lint, rules, state

from tenantmig.lint import blocking, lint_migrations
from tenantmig.source import load_migrations


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TABLE payments (id int);",
        "CREATE TABLE {{schema}}.payments (id int, customer_id int REFERENCES customers (id));",
        "CREATE TABLE {{schema}}.payments (LIKE invoices);",
        "CREATE TABLE {{schema}}.p2020 PARTITION OF payments FOR VALUES FROM (1) TO (2);",
        "CREATE INDEX CONCURRENTLY payments_idx ON payments (id);",
        "INSERT INTO payments VALUES (1);",
        "UPDATE payments SET id = 2;",
        "DELETE FROM payments;",
        "SELECT * FROM {{schema}}.invoices JOIN customers USING (id);",
        "DROP TABLE IF EXISTS payments;",
        "DROP INDEX CONCURRENTLY IF EXISTS payments_idx;",
        "DROP SEQUENCE payments_seq;",
        "CREATE SEQUENCE payments_seq;",
        "CREATE SEQUENCE {{schema}}.s2 OWNED BY payments.id;",
        "CREATE TYPE mood AS ENUM ('ok');",
        "ALTER TYPE mood ADD VALUE IF NOT EXISTS 'meh';",
        "DROP TYPE mood;",
        "CREATE TABLE {{schema}}.t (m mood);",
        "SELECT 'x'::mood;",
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';",
        "DROP FUNCTION f();",
        "CREATE TRIGGER t BEFORE INSERT ON {{schema}}.invoices "
        "FOR EACH ROW EXECUTE FUNCTION f();",
        "DROP TRIGGER t ON invoices;",
        "ALTER INDEX payments_idx RENAME TO payments_id_idx;",
        "CREATE DOMAIN positive AS int CHECK (VALUE > 0);",
    ],
)
def test_unqualified_names(sql: str) -> None:
    assert "unqualified-name" in rules(sql, transactional=False)


@pytest.mark.parametrize(
    "sql",
    [
        # the index's own name cannot be qualified: it always lands in its table's schema
        "CREATE INDEX CONCURRENTLY payments_idx ON {{schema}}.invoices (id);",
        # built-in types need no qualifier
        "CREATE TABLE {{schema}}.t (a int, b text, c varchar(3), d timestamptz, e jsonb, "
        "f uuid, g numeric(3, 1), h bigserial, i double precision, j text[], k bytea);",
        "ALTER SEQUENCE {{schema}}.s2 OWNED BY NONE;",
        "CREATE SEQUENCE {{schema}}.s2 OWNED BY {{schema}}.invoices.id;",
        # CTE names are not relations
        "WITH recent AS (SELECT id FROM {{schema}}.invoices) SELECT * FROM recent;",
        # temporary tables live in pg_temp
        "CREATE TEMP TABLE scratch (id int);",
        # built-in functions, catalogs
        "SELECT lower('A'), now(), pg_catalog.lower('B') FROM pg_catalog.pg_class;",
        "SELECT * FROM information_schema.tables;",
    ],
)
def test_names_that_need_no_qualifier(sql: str) -> None:
    findings = lint(sql, transactional=False)
    assert [f for f in findings if f.rule in ("unqualified-name", "other-tenant-schema")] == []


def test_unqualified_name_message_and_line() -> None:
    findings = lint(
        """
        -- a comment mentioning {{schema}} and payments
        ALTER TABLE {{schema}}.invoices
            ADD CONSTRAINT invoices_customer_fk FOREIGN KEY (customer_id)
            REFERENCES customers (id) NOT VALID;
        """
    )
    # reported at the statement's first line, where an allow comment would stand
    assert [(f.rule, f.line) for f in findings] == [("unqualified-name", 3)]
    assert "{{schema}}.customers" in findings[0].message


def test_shared_schemas() -> None:
    sql = "CREATE TABLE {{schema}}.t (plan_id int REFERENCES shared.plans (id), e public.citext);"
    assert rules(sql) == ["other-tenant-schema", "other-tenant-schema"]
    assert rules(sql, shared_schemas=["shared", "public"]) == []
    unqualified = lint("SELECT * FROM plans;", shared_schemas=["shared"])
    assert "shared.plans" in unqualified[0].message


def test_other_tenant_schema() -> None:
    findings = lint("INSERT INTO tenant_acme.audit SELECT * FROM {{schema}}.invoices;")
    assert [f.rule for f in findings] == ["other-tenant-schema"]
    assert "another tenant" in findings[0].message
    assert rules("SELECT tenant_acme.f();") == ["other-tenant-schema"]
    assert rules("CREATE TABLE {{schema}}.t (m tenant_acme.mood);") == ["other-tenant-schema"]


# --- calls of the migrations' own functions; files that never name {{schema}} (issue 14) --


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE VIEW {{schema}}.v AS SELECT hot_rank(1) FROM {{schema}}.invoices;",
        "ALTER TABLE {{schema}}.invoices ALTER COLUMN amount SET DEFAULT hot_rank(2);",
        "CREATE INDEX CONCURRENTLY i ON {{schema}}.invoices (hot_rank(id::int));",
        "UPDATE {{schema}}.invoices SET amount = hot_rank(3) WHERE id = 1;",
        "CALL refresh_ranks();",
        "SELECT nextval('invoice_numbers');",
    ],
)
def test_unqualified_calls_of_what_earlier_migrations_created(sql: str) -> None:
    earlier = state(
        "CREATE FUNCTION {{schema}}.hot_rank(int) RETURNS int LANGUAGE sql AS 'SELECT 1';\n"
        "CREATE PROCEDURE {{schema}}.refresh_ranks() LANGUAGE sql AS 'SELECT 1';\n"
        "CREATE SEQUENCE {{schema}}.invoice_numbers;"
    )
    found = [f for f in lint(sql, earlier=earlier, transactional=False)
             if f.rule == "unqualified-name"]
    assert len(found) == 1 and found[0].severity == "warning"
    assert found[0].message.split(" is ")[0] in (
        "function hot_rank", "function refresh_ranks", "sequence invoice_numbers")


def test_a_file_that_never_names_the_schema_loads_and_only_warns(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(
        {
            "V1__base.sql": "CREATE TABLE settings (key text PRIMARY KEY, value text);\n",
            "V2__seed.sql": "INSERT INTO settings VALUES ('theme', 'dark');\n",
            # nothing to qualify: the body resolves through the tenant's search_path, so a
            # file-level warning would only be noise
            "V3__fix.sql": "DO $$ BEGIN UPDATE settings SET value = 'light'; END $$;\n",
        }
    )
    findings = lint_migrations(load_migrations(folder))
    assert sorted((Path(f.path).name, f.line, f.rule) for f in findings) == [
        ("V1__base.sql", 1, "unqualified-name"),
        ("V2__seed.sql", 1, "unqualified-name"),
    ]
    assert blocking(findings) == []
