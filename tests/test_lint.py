"""Static safety checks of migration files (no database): rules, allows, seed patterns, --fix."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import pytest
from conftest import MakeMigrations

from tenantmig.lint import (
    RULES,
    Finding,
    LintState,
    blocking,
    fix_qualifiers,
    lint_migrations,
    lint_sql,
)
from tenantmig.source import load_migrations

PROJECT_MIGRATIONS = Path(__file__).resolve().parent.parent / "migrations"

# What earlier migrations left behind, for rules that depend on them.
BASE = """
CREATE TYPE {{schema}}.invoice_status_enum AS ENUM ('draft', 'sent', 'paid');
CREATE TABLE {{schema}}.customers (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    email varchar(50),
    created_at timestamp NOT NULL DEFAULT now()
);
CREATE TABLE {{schema}}.invoices (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id bigint NOT NULL,
    status {{schema}}.invoice_status_enum,
    amount numeric(10, 2),
    note text
);
"""


def state(*migrations: str) -> LintState:
    """The state after BASE then *migrations*, each one a migration of its own."""
    result = LintState().after(BASE)
    for sql in migrations:
        result = result.after(sql)
    return result


def lint(sql: str, *, earlier: LintState | None = None, **kwargs: Any) -> list[Finding]:
    return lint_sql(textwrap.dedent(sql), earlier=earlier or state(), **kwargs)


def rules(sql: str, **kwargs: Any) -> list[str]:
    return sorted(f.rule for f in lint(sql, **kwargs))


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


# --- details of the rules ---------------------------------------------------------------------


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


def test_concurrently_forms_in_a_transaction() -> None:
    sql = """
    CREATE INDEX CONCURRENTLY IF NOT EXISTS i1 ON {{schema}}.invoices (note);
    DROP INDEX CONCURRENTLY IF EXISTS {{schema}}.i2;
    REINDEX INDEX CONCURRENTLY {{schema}}.i3;
    ALTER TABLE {{schema}}.invoices DETACH PARTITION {{schema}}.invoices_2020 CONCURRENTLY;
    """
    assert rules(sql) == ["concurrently-in-transaction"] * 4
    # a no-transaction file runs statement by statement: several are fine
    assert rules(sql, transactional=False) == []


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


def test_constraint_not_valid_covers_foreign_keys_and_inline_constraints() -> None:
    assert rules(
        """
        ALTER TABLE {{schema}}.invoices ADD CONSTRAINT invoices_customer_fk
            FOREIGN KEY (customer_id) REFERENCES {{schema}}.customers (id);
        """
    ) == ["constraint-not-valid"]
    assert rules(
        "ALTER TABLE {{schema}}.invoices "
        "ADD COLUMN payer_id bigint REFERENCES {{schema}}.customers (id);"
    ) == ["constraint-not-valid"]
    assert rules(
        "ALTER TABLE {{schema}}.invoices ADD COLUMN qty int CHECK (qty > 0);"
    ) == ["constraint-not-valid"]


def test_validate_after_access_exclusive_in_the_same_transaction() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);
    ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_amount_positive;
    """
    findings = lint(sql)
    assert [f.rule for f in findings] == ["validate-same-migration"]
    assert findings[0].line == 3
    assert "ACCESS EXCLUSIVE" in findings[0].message and "line 2" in findings[0].message
    # no transaction: the ALTER's lock is released before the scan starts
    assert rules(sql, transactional=False) == []
    # a lock on another table does not matter
    assert rules(
        """
        ALTER TABLE {{schema}}.customers ADD COLUMN phone text;
        ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_amount_positive;
        """
    ) == []


def test_validate_after_a_foreign_key_locked_the_referenced_table() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices ADD CONSTRAINT invoices_customer_fk
        FOREIGN KEY (customer_id) REFERENCES {{schema}}.customers (id) NOT VALID;
    ALTER TABLE {{schema}}.customers VALIDATE CONSTRAINT customers_email_check;
    """
    findings = lint(sql)
    assert [f.rule for f in findings] == ["validate-same-migration"]
    assert "SHARE ROW EXCLUSIVE" in findings[0].message


NOT_VALID_CHECK = """
ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT invoices_note_not_null CHECK (note IS NOT NULL) NOT VALID;
"""
VALIDATE_CHECK = "ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_note_not_null;"
SET_NOT_NULL = "ALTER TABLE {{schema}}.invoices ALTER COLUMN note SET NOT NULL;"


def test_set_not_null_after_a_check_validated_earlier_is_safe() -> None:
    # the project's V5 / V7 shape: NOT VALID in one migration, VALIDATE + SET NOT NULL in a later
    earlier = state(NOT_VALID_CHECK)
    assert lint(VALIDATE_CHECK + "\n" + SET_NOT_NULL, earlier=earlier) == []
    # ... or validated by a migration of its own in between
    assert lint(SET_NOT_NULL, earlier=state(NOT_VALID_CHECK, VALIDATE_CHECK)) == []


@pytest.mark.parametrize(
    ("earlier", "sql"),
    [
        ((), SET_NOT_NULL),  # no CHECK at all
        ((NOT_VALID_CHECK,), SET_NOT_NULL),  # a CHECK never validated
        ((), NOT_VALID_CHECK + VALIDATE_CHECK + SET_NOT_NULL),  # CHECK added in this migration
        ((NOT_VALID_CHECK,), SET_NOT_NULL + VALIDATE_CHECK),  # validated after, too late
        (
            (NOT_VALID_CHECK, VALIDATE_CHECK),
            "ALTER TABLE {{schema}}.invoices ALTER COLUMN amount SET NOT NULL;",  # other column
        ),
    ],
)
def test_set_not_null_without_a_validated_check(earlier: tuple[str, ...], sql: str) -> None:
    assert "set-not-null-unvalidated" in rules(sql, earlier=state(*earlier))


def test_dropped_check_no_longer_proves_not_null() -> None:
    dropped = "ALTER TABLE {{schema}}.invoices DROP CONSTRAINT invoices_note_not_null;"
    earlier = state(NOT_VALID_CHECK, VALIDATE_CHECK, dropped)
    assert rules(SET_NOT_NULL, earlier=earlier) == ["set-not-null-unvalidated"]


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


def test_primary_key_without_index_and_inline_unique() -> None:
    assert rules("ALTER TABLE {{schema}}.invoices ADD PRIMARY KEY (id);") == [
        "add-unique-without-index"
    ]
    assert rules("ALTER TABLE {{schema}}.invoices ADD COLUMN ref text UNIQUE;") == [
        "add-unique-without-index"
    ]
    assert rules(
        "ALTER TABLE {{schema}}.invoices ADD CONSTRAINT invoices_pkey2 PRIMARY KEY "
        "USING INDEX invoices_id_idx;"
    ) == []


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


# --- names ----------------------------------------------------------------------------------


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
    assert [(f.rule, f.line) for f in findings] == [("unqualified-name", 5)]
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


# --- the seed's zero-downtime patterns as first written, and what the linter finds in each -----


def test_seed_pattern_1_step_5_drops_and_renames_in_one_release() -> None:
    sql = """
    ALTER TABLE {{schema}}.customers DROP COLUMN email;
    ALTER TABLE {{schema}}.customers RENAME COLUMN email_new TO email;
    """
    assert rules(sql) == ["drop-column", "rename-column"]


def test_seed_pattern_1_widening_varchar_is_binary_coercible() -> None:
    # NOTES P1: varchar(50) -> varchar(255) needs no swap at all
    assert rules("ALTER TABLE {{schema}}.customers ALTER COLUMN email TYPE VARCHAR(255);") == []


def test_seed_pattern_2_step_3_all_in_one_migration() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT invoices_status_not_null
    CHECK (status IS NOT NULL) NOT VALID;

    ALTER TABLE {{schema}}.invoices
    VALIDATE CONSTRAINT invoices_status_not_null;

    ALTER TABLE {{schema}}.invoices
    ALTER COLUMN status SET NOT NULL;

    ALTER TABLE {{schema}}.invoices
    DROP CONSTRAINT invoices_status_not_null;
    """
    findings = lint(sql)
    assert [(f.rule, f.line) for f in findings] == [
        ("validate-same-migration", 6),
        ("set-not-null-unvalidated", 9),
    ]


def test_seed_pattern_2_split_over_two_migrations_is_clean() -> None:
    add = """
    ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT invoices_status_not_null CHECK (status IS NOT NULL) NOT VALID;
    """
    validate = """
    ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_status_not_null;
    ALTER TABLE {{schema}}.invoices ALTER COLUMN status SET NOT NULL;
    ALTER TABLE {{schema}}.invoices DROP CONSTRAINT invoices_status_not_null;
    """
    assert lint(add) == []
    assert lint(validate, earlier=state(textwrap.dedent(add))) == []


SEED_P3 = """
CREATE INDEX CONCURRENTLY idx_invoices_customer_status_date
ON {{schema}}.invoices (customer_id, status, created_at DESC)
"""


def test_seed_pattern_3_concurrently_inside_a_transaction() -> None:
    assert rules(SEED_P3) == ["concurrently-in-transaction"]


def test_seed_pattern_3_without_concurrently() -> None:
    assert rules(SEED_P3.replace(" CONCURRENTLY", "")) == ["index-not-concurrent"]


def test_seed_pattern_3_transaction_false_variant_is_not_retryable() -> None:
    assert rules(SEED_P3, transactional=False) == ["concurrently-not-retryable"]
    robust = SEED_P3.replace("CONCURRENTLY", "CONCURRENTLY IF NOT EXISTS")
    assert rules(robust, transactional=False) == []
    down = "DROP INDEX CONCURRENTLY IF EXISTS {{schema}}.idx_invoices_customer_status_date"
    assert rules(down, transactional=False) == []


def test_seed_pattern_4_like_including_all_partitioned() -> None:
    sql = """
    CREATE TABLE {{schema}}.invoices_partitioned (
      LIKE {{schema}}.invoices INCLUDING ALL
    ) PARTITION BY RANGE (created_at);
    CREATE TABLE {{schema}}.invoices_2025_01
    PARTITION OF {{schema}}.invoices_partitioned
    FOR VALUES FROM ('2025-01-01') TO ('2025-02-01');
    """
    findings = lint(sql)
    assert [(f.rule, f.severity) for f in findings] == [
        ("like-copies-defaults", "warning"),
        ("partition-like-indexes", "error"),
    ]
    assert "EXCLUDING INDEXES" in findings[1].message


def test_seed_pattern_4_step_3_renames_tables() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices RENAME TO invoices_old;
    ALTER TABLE {{schema}}.invoices_partitioned RENAME TO invoices;
    """
    assert rules(sql) == ["rename-table", "rename-table"]


def test_seed_pattern_6_search_path_and_unqualified_names() -> None:
    sql = """
    SET search_path TO tenant_acme;
    ALTER TABLE payments
    ADD COLUMN status VARCHAR(50) DEFAULT 'pending';
    CREATE INDEX idx_payments_status ON payments (status);
    SET search_path TO public;
    """
    findings = lint(sql)
    assert [(f.rule, f.line) for f in findings] == [
        ("set-search-path", 2),
        ("unqualified-name", 3),
        ("index-not-concurrent", 5),
        ("unqualified-name", 5),
        ("set-search-path", 6),
    ]


def test_seed_pattern_7_foreign_key_and_validate_in_one() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT fk_invoices_customer
    FOREIGN KEY (customer_id)
    REFERENCES {{schema}}.customers (id)
    NOT VALID;

    ALTER TABLE {{schema}}.invoices
    VALIDATE CONSTRAINT fk_invoices_customer;
    """
    findings = lint(sql)
    assert [(f.rule, f.line) for f in findings] == [("validate-same-migration", 8)]
    assert "SHARE ROW EXCLUSIVE" in findings[0].message
    # NOTES P7: validate in a later migration
    assert lint(sql.split("NOT VALID;")[0] + "NOT VALID;") == []


def test_seed_pattern_8_add_value() -> None:
    seed = """
    ALTER TYPE {{schema}}.invoice_status_enum ADD VALUE 'cancelled';
    ALTER TYPE {{schema}}.invoice_status_enum ADD VALUE 'refunded';
    """
    assert rules(seed) == ["enum-value-without-if-not-exists"] * 2
    used = """
    ALTER TYPE {{schema}}.invoice_status_enum ADD VALUE IF NOT EXISTS 'cancelled';
    ALTER TABLE {{schema}}.invoices ALTER COLUMN status SET DEFAULT 'cancelled';
    """
    assert rules(used) == ["enum-value-used-same-migration"]


def test_seed_pattern_8_enum_to_varchar_rewrites() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices
    ALTER COLUMN status TYPE VARCHAR(50);
    DROP TYPE IF EXISTS {{schema}}.invoice_status_enum;
    """
    findings = lint(sql)
    assert [(f.rule, f.severity) for f in findings] == [("alter-column-type", "error")]
    assert "invoice_status_enum" in findings[0].message
    back = (
        "ALTER TABLE {{schema}}.invoices ALTER COLUMN status TYPE "
        "{{schema}}.invoice_status_enum USING status::{{schema}}.invoice_status_enum;"
    )
    assert rules(back) == ["alter-column-type"]


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


# --- lint --fix -----------------------------------------------------------------------------

FIX_BEFORE = """\
-- payments: a comment naming payments stays as it is
CREATE TABLE payments (id bigint PRIMARY KEY, mood mood, customer_id bigint
    REFERENCES customers (id), created timestamptz DEFAULT now());
CREATE TYPE mood AS ENUM ('payments', 'customers');
ALTER TABLE ONLY payments ADD COLUMN note text;
CREATE INDEX CONCURRENTLY payments_customer_idx ON payments (customer_id);
DROP INDEX CONCURRENTLY IF EXISTS payments_customer_idx, {{schema}}.other_idx;
DROP TABLE old_payments, "Old Payments" CASCADE;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE payments SET note = 'customers'; RETURN NEW; END $$;
CREATE TRIGGER payments_touch BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION touch();
DROP TRIGGER payments_touch ON payments;
DROP FUNCTION touch();
INSERT INTO payments (id) SELECT id FROM customers JOIN orders USING (id);
WITH recent AS (SELECT 1) DELETE FROM payments USING recent;
ALTER TYPE mood ADD VALUE IF NOT EXISTS 'ok';
SELECT 'payments'::text, E'customers', pg_catalog.lower('x') FROM public.plans;
"""

FIX_AFTER = """\
-- payments: a comment naming payments stays as it is
CREATE TABLE {{schema}}.payments (id bigint PRIMARY KEY, mood {{schema}}.mood, customer_id bigint
    REFERENCES {{schema}}.customers (id), created timestamptz DEFAULT now());
CREATE TYPE {{schema}}.mood AS ENUM ('payments', 'customers');
ALTER TABLE ONLY {{schema}}.payments ADD COLUMN note text;
CREATE INDEX CONCURRENTLY payments_customer_idx ON {{schema}}.payments (customer_id);
DROP INDEX CONCURRENTLY IF EXISTS {{schema}}.payments_customer_idx, {{schema}}.other_idx;
DROP TABLE {{schema}}.old_payments, {{schema}}."Old Payments" CASCADE;
CREATE FUNCTION {{schema}}.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE payments SET note = 'customers'; RETURN NEW; END $$;
CREATE TRIGGER payments_touch BEFORE UPDATE ON {{schema}}.payments
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.touch();
DROP TRIGGER payments_touch ON {{schema}}.payments;
DROP FUNCTION {{schema}}.touch();
INSERT INTO {{schema}}.payments (id) SELECT id FROM {{schema}}.customers JOIN {{schema}}.orders USING (id);
WITH recent AS (SELECT 1) DELETE FROM {{schema}}.payments USING recent;
ALTER TYPE {{schema}}.mood ADD VALUE IF NOT EXISTS 'ok';
SELECT 'payments'::text, E'customers', pg_catalog.lower('x') FROM public.plans;
"""  # noqa: E501


def test_fix_qualifiers() -> None:
    assert fix_qualifiers(FIX_BEFORE) == FIX_AFTER


def test_fix_qualifiers_is_idempotent_and_leaves_nothing_unqualified() -> None:
    assert fix_qualifiers(FIX_AFTER) == FIX_AFTER
    findings = lint_sql(FIX_AFTER, transactional=False, shared_schemas=["public"])
    assert [f for f in findings if f.rule == "unqualified-name"] == []


def test_fix_qualifiers_leaves_unparsable_text_alone() -> None:
    text = "CREATE TABLE payments (id int);\nALTER TABEL payments ADD x int;\n"
    assert fix_qualifiers(text) == text


def test_fix_qualifiers_keeps_crlf_and_other_schemas() -> None:
    text = "ALTER TABLE payments ADD x int;\r\nSELECT * FROM tenant_acme.t, shared.plans;\r\n"
    assert fix_qualifiers(text) == (
        "ALTER TABLE {{schema}}.payments ADD x int;\r\n"
        "SELECT * FROM tenant_acme.t, shared.plans;\r\n"
    )
