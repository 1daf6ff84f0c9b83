"""Static safety checks of migration files (no database): every rule's dangerous and safe
form, parse errors, allows, findings, whole folders. Rule details: tests/test_lint_*.py."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from conftest import MakeMigrations
from lint_support import PROJECT_MIGRATIONS, lint

from tenantmig.lint import RULES, Finding, blocking, lint_migrations, lint_sql
from tenantmig.source import load_migrations

# --- every rule: SQL that must trip it, and the safe form that must not ---------------------

# (rule, dangerous SQL, safe SQL, options for both)
# (rule, dangerous SQL, safe SQL, options for the dangerous one, for the safe one)
PAIRS: list[tuple[str, str, str, dict[str, Any], dict[str, Any]]] = [
    (
        "index-not-concurrent",
        "CREATE INDEX invoices_note_idx ON {{schema}}.invoices (note);",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS invoices_note_idx ON {{schema}}.invoices (note);",
        {"transactional": False},
        {"transactional": False},
    ),
    (
        "drop-index-not-concurrent",
        "DROP INDEX {{schema}}.invoices_note_idx;",
        "DROP INDEX CONCURRENTLY IF EXISTS {{schema}}.invoices_note_idx;",
        {"transactional": False},
        {"transactional": False},
    ),
    (
        "concurrently-in-transaction",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS invoices_note_idx ON {{schema}}.invoices (note);",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS invoices_note_idx ON {{schema}}.invoices (note);",
        {"transactional": True},
        {"transactional": False},
    ),
    (
        "concurrently-not-retryable",
        "CREATE INDEX CONCURRENTLY invoices_note_idx ON {{schema}}.invoices (note);",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS invoices_note_idx ON {{schema}}.invoices (note);",
        {"transactional": False},
        {"transactional": False},
    ),
    (
        "constraint-not-valid",
        "ALTER TABLE {{schema}}.invoices ADD CONSTRAINT invoices_amount_positive "
        "CHECK (amount > 0);",
        "ALTER TABLE {{schema}}.invoices ADD CONSTRAINT invoices_amount_positive "
        "CHECK (amount > 0) NOT VALID;",
        {},
        {},
    ),
    (
        "validate-same-migration",
        """
        ALTER TABLE {{schema}}.invoices
            ADD CONSTRAINT invoices_amount_positive CHECK (amount > 0) NOT VALID;
        ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_amount_positive;
        """,
        "ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_amount_positive;",
        {},
        {},
    ),
    (
        "set-not-null-unvalidated",
        "ALTER TABLE {{schema}}.invoices ALTER COLUMN note SET NOT NULL;",
        "ALTER TABLE {{schema}}.invoices ALTER COLUMN note DROP NOT NULL;",
        {},
        {},
    ),
    (
        "add-column-not-null-no-default",
        "ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3) NOT NULL;",
        "ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3) NOT NULL DEFAULT 'EUR';",
        {},
        {},
    ),
    (
        "add-column-volatile-default",
        "ALTER TABLE {{schema}}.invoices ADD COLUMN token uuid DEFAULT gen_random_uuid();",
        "ALTER TABLE {{schema}}.invoices ADD COLUMN seen_at timestamptz DEFAULT now();",
        {},
        {},
    ),
    (
        "alter-column-type",
        "ALTER TABLE {{schema}}.customers ALTER COLUMN email TYPE varchar(20);",
        "ALTER TABLE {{schema}}.customers ALTER COLUMN email TYPE varchar(255);",
        {},
        {},
    ),
    (
        "add-unique-without-index",
        "ALTER TABLE {{schema}}.customers ADD CONSTRAINT customers_email_key UNIQUE (email);",
        "ALTER TABLE {{schema}}.customers ADD CONSTRAINT customers_email_key "
        "UNIQUE USING INDEX customers_email_idx;",
        {},
        {},
    ),
    (
        "rename-column",
        "ALTER TABLE {{schema}}.customers RENAME COLUMN email TO email_address;",
        "ALTER TABLE {{schema}}.customers ADD COLUMN email_address varchar(255);",
        {},
        {},
    ),
    (
        "rename-table",
        "ALTER TABLE {{schema}}.customers RENAME TO clients;",
        "CREATE VIEW {{schema}}.clients AS SELECT * FROM {{schema}}.customers;",
        {},
        {},
    ),
    (
        "drop-column",
        "ALTER TABLE {{schema}}.invoices DROP COLUMN note;",
        "ALTER TABLE {{schema}}.invoices ALTER COLUMN note DROP DEFAULT;",
        {},
        {},
    ),
    (
        "drop-table",
        "DROP TABLE {{schema}}.invoices;",
        "CREATE TABLE {{schema}}.scratch (id int); DROP TABLE {{schema}}.scratch;",
        {},
        {},
    ),
    (
        "enum-value-used-same-migration",
        """
        ALTER TYPE {{schema}}.invoice_status_enum ADD VALUE IF NOT EXISTS 'void';
        ALTER TABLE {{schema}}.invoices ALTER COLUMN status SET DEFAULT 'void';
        """,
        "ALTER TYPE {{schema}}.invoice_status_enum ADD VALUE IF NOT EXISTS 'void';",
        {},
        {},
    ),
    (
        "enum-value-without-if-not-exists",
        "ALTER TYPE {{schema}}.invoice_status_enum ADD VALUE 'void';",
        "ALTER TYPE {{schema}}.invoice_status_enum ADD VALUE IF NOT EXISTS 'void';",
        {},
        {},
    ),
    (
        "unbatched-dml",
        """
        ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);
        UPDATE {{schema}}.invoices SET currency = 'EUR' WHERE currency IS NULL;
        """,
        "ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);",
        {},
        {},
    ),
    (
        "transaction-control",
        "BEGIN; ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3); COMMIT;",
        "ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);",
        {},
        {},
    ),
    (
        "set-search-path",
        "SET search_path TO tenant_acme; ALTER TABLE {{schema}}.invoices DROP DEFAULT;",
        "SET LOCAL lock_timeout = '2s'; ALTER TABLE {{schema}}.invoices ALTER note DROP DEFAULT;",
        {},
        {},
    ),
    (
        "partition-like-indexes",
        "CREATE TABLE {{schema}}.invoices_p (LIKE {{schema}}.invoices INCLUDING ALL) "
        "PARTITION BY RANGE (id);",
        "CREATE TABLE {{schema}}.invoices_p (LIKE {{schema}}.invoices INCLUDING ALL "
        "EXCLUDING INDEXES EXCLUDING DEFAULTS, PRIMARY KEY (id)) PARTITION BY RANGE (id);",
        {},
        {},
    ),
    (
        "like-copies-defaults",
        "CREATE TABLE {{schema}}.invoices_copy (LIKE {{schema}}.invoices INCLUDING DEFAULTS);",
        "CREATE TABLE {{schema}}.invoices_copy (LIKE {{schema}}.invoices INCLUDING IDENTITY);",
        {},
        {},
    ),
    (
        "unqualified-name",
        "ALTER TABLE invoices ADD COLUMN currency char(3);",
        "ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);",
        {},
        {},
    ),
    (
        "other-tenant-schema",
        "ALTER TABLE tenant_acme.invoices ADD COLUMN currency char(3);",
        "ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);",
        {},
        {},
    ),
    (
        "reindex-not-concurrent",
        "REINDEX INDEX {{schema}}.invoices_pkey;",
        "-- tenantmig:no-transaction\nREINDEX INDEX CONCURRENTLY {{schema}}.invoices_pkey;",
        {},
        {"transactional": False},
    ),
    (
        "cluster-vacuum-full",
        "VACUUM FULL {{schema}}.invoices;",
        "VACUUM (ANALYZE) {{schema}}.invoices;",
        {"transactional": False},
        {"transactional": False},
    ),
    (
        "detach-partition-not-concurrent",
        "ALTER TABLE {{schema}}.events DETACH PARTITION {{schema}}.events_2020;",
        "ALTER TABLE {{schema}}.events DETACH PARTITION {{schema}}.events_2020 FINALIZE;",
        {},
        {"transactional": False},
    ),
    (
        "detach-partition-pending",
        "ALTER TABLE {{schema}}.events DETACH PARTITION {{schema}}.events_2020 CONCURRENTLY;",
        "ALTER TABLE {{schema}}.events DETACH PARTITION {{schema}}.events_2020 FINALIZE;",
        {"transactional": False},
        {"transactional": False},
    ),
    (
        "truncate-cascade",
        "TRUNCATE {{schema}}.customers CASCADE;",
        "TRUNCATE {{schema}}.invoices, {{schema}}.customers;",
        {},
        {},
    ),
    (
        "truncate-existing-table",
        """
        ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);
        TRUNCATE {{schema}}.invoices;
        """,
        """
        CREATE TABLE {{schema}}.imports (id bigint PRIMARY KEY, line text);
        TRUNCATE {{schema}}.imports;
        """,
        {},
        {},
    ),
    (
        "domain-constraint-not-valid",
        "ALTER DOMAIN {{schema}}.positive ADD CONSTRAINT positive_check CHECK (VALUE > 0);",
        "ALTER DOMAIN {{schema}}.positive ADD CONSTRAINT positive_check CHECK (VALUE > 0) "
        "NOT VALID;",
        {},
        {},
    ),
    (
        "domain-with-check",
        "CREATE DOMAIN {{schema}}.positive AS numeric CHECK (VALUE > 0);",
        "CREATE DOMAIN {{schema}}.label AS text;",
        {},
        {},
    ),
    (
        "not-retryable",
        "ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);",
        "ALTER TABLE {{schema}}.invoices ADD COLUMN IF NOT EXISTS currency char(3);",
        {"transactional": False},
        {"transactional": False},
    ),
    (
        "set-schema-shared",
        "ALTER TABLE {{schema}}.invoices SET SCHEMA shared;",
        "CREATE TABLE {{schema}}.plans (LIKE shared.plans INCLUDING CONSTRAINTS);",
        {"shared_schemas": ["shared"]},
        {"shared_schemas": ["shared"]},
    ),
    (
        "shared-schema-ddl",
        "ALTER TABLE shared.plans ADD COLUMN tier text;",
        "ALTER TABLE {{schema}}.invoices ADD CONSTRAINT invoices_plan_fk "
        "FOREIGN KEY (customer_id) REFERENCES shared.plans (id) NOT VALID;",
        {"shared_schemas": ["shared"]},
        {"shared_schemas": ["shared"]},
    ),
    (
        "database-wide-statement",
        "CREATE EXTENSION IF NOT EXISTS ltree;",
        "CREATE TABLE {{schema}}.paths (id int PRIMARY KEY, path extensions.ltree);",
        {"shared_schemas": ["extensions"]},
        {"shared_schemas": ["extensions"]},
    ),
    (
        "drop-not-null",
        "ALTER TABLE {{schema}}.customers ALTER COLUMN created_at DROP NOT NULL;",
        "ALTER TABLE {{schema}}.customers ALTER COLUMN created_at SET DEFAULT now();",
        {},
        {},
    ),
    (
        "drop-default",
        "ALTER TABLE {{schema}}.customers ALTER COLUMN created_at DROP DEFAULT;",
        "ALTER TABLE {{schema}}.customers ALTER COLUMN created_at SET DEFAULT now();",
        {},
        {},
    ),
    (
        "drop-database",
        "DROP DATABASE tenants_old;",
        "CREATE TABLE {{schema}}.scratch (id int); DROP TABLE {{schema}}.scratch;",
        {"transactional": False},
        {},
    ),
    (
        "drop-schema",
        "DROP SCHEMA {{schema}} CASCADE;",
        "CREATE TABLE {{schema}}.scratch (id int); DROP TABLE {{schema}}.scratch;",
        {},
        {},
    ),
    (
        "identifier-too-long",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS "
        "invoices_customer_id_status_created_at_amount_currency_note_idx_v2 "
        "ON {{schema}}.invoices (customer_id);",
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS invoices_customer_status_idx "
        "ON {{schema}}.invoices (customer_id);",
        {"transactional": False},
        {"transactional": False},
    ),
    (
        "unparsable",
        "ALTER TABEL {{schema}}.invoices ADD COLUMN currency char(3);",
        "ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);",
        {},
        {},
    ),
    (
        "unused-allow",
        "-- tenantmig:allow drop-table nothing is dropped here\n"
        "ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);",
        "-- tenantmig:allow drop-column nobody reads note since 2.4\n"
        "ALTER TABLE {{schema}}.invoices DROP COLUMN note;",
        {},
        {},
    ),
]


def test_every_rule_has_a_pair() -> None:
    assert sorted(rule for rule, *_ in PAIRS) == sorted(RULES)


PAIR_ARGS = ("rule", "bad", "good", "bad_options", "good_options")


@pytest.mark.parametrize(PAIR_ARGS, PAIRS, ids=[p[0] for p in PAIRS])
def test_dangerous_form_trips_the_rule(
    rule: str, bad: str, good: str, bad_options: dict[str, Any], good_options: dict[str, Any]
) -> None:
    findings = lint(bad, **bad_options)
    assert rule in [f.rule for f in findings], findings
    found = next(f for f in findings if f.rule == rule)
    assert " — " in found.message  # what is dangerous — the safe pattern


@pytest.mark.parametrize(PAIR_ARGS, PAIRS, ids=[p[0] for p in PAIRS])
def test_safe_form_is_clean(
    rule: str, bad: str, good: str, bad_options: dict[str, Any], good_options: dict[str, Any]
) -> None:
    findings = lint(good, **good_options)
    assert blocking(findings) == []
    assert rule not in [f.rule for f in findings if f.allowed is None]


# --- rules in general ------------------------------------------------------------------


def test_tables_created_in_the_same_migration_are_exempt() -> None:
    sql = """
    CREATE TABLE {{schema}}.payments (id bigint PRIMARY KEY, customer_id bigint, note text);
    CREATE INDEX payments_customer_idx ON {{schema}}.payments (customer_id);
    ALTER TABLE {{schema}}.payments
        ADD COLUMN token uuid NOT NULL DEFAULT gen_random_uuid(),
        ADD COLUMN paid boolean NOT NULL,
        ADD CONSTRAINT payments_customer_fk
            FOREIGN KEY (customer_id) REFERENCES {{schema}}.customers (id),
        ADD CONSTRAINT payments_note_key UNIQUE (note),
        ALTER COLUMN note SET NOT NULL,
        ALTER COLUMN note TYPE varchar(10);
    ALTER TABLE {{schema}}.payments RENAME COLUMN note TO memo;
    UPDATE {{schema}}.payments SET memo = 'x';
    ALTER TABLE {{schema}}.payments DROP COLUMN memo;
    ALTER TABLE {{schema}}.payments RENAME TO payment;
    DROP TABLE {{schema}}.payment;
    """
    assert lint(sql) == []


# --- parse errors, lines, allows, findings ----------------------------------------------------


def test_unparsable_statement_is_reported_with_its_line_and_the_rest_is_linted() -> None:
    sql = """
    -- héllo: not ASCII before the error
    ALTER TABLE {{schema}}.invoices ADD COLUMN a int;
    ALTER TABEL {{schema}}.invoices ADD COLUMN b int;
    DROP TABLE {{schema}}.customers;
    """
    findings = lint(sql)
    assert [(f.rule, f.line) for f in findings] == [("unparsable", 4), ("drop-table", 5)]
    assert 'syntax error at or near "TABEL"' in findings[0].message


def test_lines_are_exact_after_schema_placeholders() -> None:
    sql = "SELECT 1 FROM {{schema}}.a, {{schema}}.b;\n\n\nCREATE INDEX i ON {{schema}}.c (x),"
    sql += "\n" + "-- x\n" * 3 + "\n"
    findings = lint_sql(sql)  # "syntax error at end of input": the statement's last line
    assert [(f.rule, f.line) for f in findings] == [("unparsable", 4)]
    findings = lint_sql("SELECT 1;\n/* a\ncomment */ CREATE INDEX i ON {{schema}}.invoices (x);")
    assert [(f.rule, f.line) for f in findings] == [("index-not-concurrent", 3)]


def test_allow_in_header_covers_the_whole_file() -> None:
    sql = """
    -- tenantmig:lock-timeout=5s
    -- tenantmig:allow drop-column the app stopped reading both columns in 2.4
    ALTER TABLE {{schema}}.invoices DROP COLUMN note;
    ALTER TABLE {{schema}}.invoices DROP COLUMN amount;
    """
    findings = lint(sql)
    assert [(f.rule, f.allowed) for f in findings] == [
        ("drop-column", "the app stopped reading both columns in 2.4")
    ] * 2
    assert blocking(findings) == []


def test_allow_before_a_statement_covers_only_that_statement() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices ADD COLUMN x int;
    -- tenantmig:allow drop-column nobody reads note
    -- (a comment in between is fine)
    ALTER TABLE {{schema}}.invoices
        DROP COLUMN note;
    ALTER TABLE {{schema}}.invoices DROP COLUMN amount;
    """
    findings = lint(sql)
    assert [(f.line, f.allowed) for f in findings] == [(5, "nobody reads note"), (7, None)]
    assert blocking(findings) == [findings[1]]


def test_allow_for_another_rule_covers_nothing() -> None:
    sql = """
    -- tenantmig:allow rename-column not this rule
    ALTER TABLE {{schema}}.invoices DROP COLUMN note;
    """
    assert [(f.rule, f.allowed) for f in lint(sql)] == [
        ("unused-allow", None),
        ("drop-column", None),
    ]


def test_allow_with_an_unknown_rule_id() -> None:
    findings = lint("-- tenantmig:allow drop-colum typo\nALTER TABLE {{schema}}.t DROP COLUMN c;")
    assert [(f.rule, f.severity) for f in findings] == [
        ("unused-allow", "warning"),
        ("drop-column", "error"),
    ]
    assert "no known rule 'drop-colum'" in findings[0].message


def test_finding_str_and_blocking() -> None:
    finding = Finding("V1__x.sql", 3, "drop-table", "bad — do this", "error")
    assert str(finding) == "V1__x.sql:3 drop-table: bad — do this"
    assert finding.blocking
    allowed = Finding("V1__x.sql", 3, "drop-table", "bad — do this", "error", "on purpose")
    assert str(allowed) == "V1__x.sql:3 drop-table: bad — do this (allowed: on purpose)"
    assert not allowed.blocking
    assert not Finding("p", 1, "like-copies-defaults", "m", "warning").blocking


def test_path_is_reported() -> None:
    findings = lint_sql("DROP TABLE {{schema}}.t;", path="migrations/V9__x.sql")
    assert str(findings[0]).startswith("migrations/V9__x.sql:1 drop-table: ")


def test_rules_have_descriptions() -> None:
    assert all(rule == rule.lower() and " " not in rule for rule in RULES)
    assert all(description for description in RULES.values())


# --- whole migration folders ----------------------------------------------------------------


def test_project_migrations_have_no_unallowed_errors() -> None:
    findings = lint_migrations(load_migrations(PROJECT_MIGRATIONS))
    assert blocking(findings) == []
    assert [f for f in findings if f.rule == "unused-allow"] == []
    # the intended findings are there, each with its reason
    allowed = sorted({(Path(f.path).name, f.rule) for f in findings})
    assert allowed == [
        ("U11__invoice_channel_enum.sql", "drop-column"),
        ("U1__create_customers_and_invoices.sql", "drop-table"),
        ("U2__customers_email_new_with_sync_trigger.sql", "drop-column"),
        ("U4__switch_customers_email.sql", "rename-column"),
        ("U5__invoices_status_with_not_valid_check.sql", "drop-column"),
        ("V4__switch_customers_email.sql", "rename-column"),
    ]
    assert all(f.allowed for f in findings)


def test_facts_flow_across_migration_files(make_migrations: MakeMigrations) -> None:
    directory = make_migrations(
        {
            "V1__t.sql": """
                CREATE TABLE {{schema}}.t (id int PRIMARY KEY, a varchar(10), b text);
            """,
            "V2__check.sql": """
                ALTER TABLE {{schema}}.t ADD CONSTRAINT t_b_nn CHECK (b IS NOT NULL) NOT VALID;
            """,
            "V3__backfill.py": """
                async def up(ctx):
                    await ctx.execute("UPDATE {{schema}}.t SET b = '' WHERE b IS NULL")
            """,
            "V4__validate.sql": """
                ALTER TABLE {{schema}}.t VALIDATE CONSTRAINT t_b_nn;
                ALTER TABLE {{schema}}.t ALTER COLUMN b SET NOT NULL;
                ALTER TABLE {{schema}}.t ALTER COLUMN a TYPE varchar(20);
            """,
            "U4__validate.sql": """
                ALTER TABLE {{schema}}.t ALTER COLUMN a TYPE varchar(10);
            """,
            "V5__index.sql": """
                -- tenantmig:no-transaction
                CREATE INDEX CONCURRENTLY IF NOT EXISTS t_a_idx ON {{schema}}.t (a);
            """,
        }
    )
    findings = lint_migrations(load_migrations(directory))
    assert [(Path(f.path).name, f.line, f.rule) for f in findings] == [
        ("U4__validate.sql", 2, "alter-column-type")
    ]


def test_lint_migrations_passes_shared_schemas(make_migrations: MakeMigrations) -> None:
    directory = make_migrations(
        {"V1__t.sql": "CREATE TABLE {{schema}}.t (plan int REFERENCES shared.plans (id));\n"}
    )
    migrations = load_migrations(directory)
    assert [f.rule for f in lint_migrations(migrations)] == ["other-tenant-schema"]
    assert lint_migrations(migrations, shared_schemas=["shared"]) == []
