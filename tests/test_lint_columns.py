"""Lint rules of the columns family: ADD COLUMN rewrites, ALTER COLUMN TYPE coercions."""

from __future__ import annotations

import asyncpg
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


# --- defaults: volatile unless known to be immutable or stable -------------------------------


@pytest.mark.parametrize(
    ("column", "says"),
    [
        ("token uuid DEFAULT gen_random_uuid()", "the volatile default gen_random_uuid()"),
        ("code text DEFAULT {{schema}}.new_code()", "{{schema}}.new_code(), which is not known"),
        ("code text DEFAULT make_code(8)", "make_code(), which is not known"),
        ("n int DEFAULT floor(random() * 10)", "the volatile default random()"),
    ],
)
def test_a_default_calling_an_unknown_function_rewrites(column: str, says: str) -> None:
    findings = lint(f"ALTER TABLE {{{{schema}}}}.invoices ADD COLUMN {column};")
    assert [f.rule for f in findings] == ["add-column-volatile-default"]
    assert says in findings[0].message


@pytest.mark.parametrize(
    "column",
    [
        "day date DEFAULT date_trunc('day', now())",
        "label text DEFAULT lower('EUR')",
        "meta jsonb DEFAULT jsonb_build_object('v', 1)",
        "at timestamptz DEFAULT statement_timestamp()",
        "tz text DEFAULT current_setting('TimeZone')",
        "seen date DEFAULT CURRENT_DATE",
        "since timestamptz DEFAULT '2020-01-01'::timestamptz",
    ],
)
def test_a_default_of_known_safe_functions_does_not_rewrite(column: str) -> None:
    assert rules(f"ALTER TABLE {{{{schema}}}}.invoices ADD COLUMN {column};") == []


def test_functions_the_migrations_declared_immutable_or_stable_are_safe_defaults() -> None:
    immutable = """
    CREATE FUNCTION {{schema}}.default_code() RETURNS text LANGUAGE sql IMMUTABLE
        AS $$ SELECT 'A' $$;
    """
    add = "ALTER TABLE {{schema}}.invoices ADD COLUMN code text DEFAULT {{schema}}.default_code();"
    # in the same migration, and in a later one (the state carries it)
    assert rules(immutable + add) == []
    assert rules(add, earlier=state(immutable)) == []
    stable = immutable.replace("IMMUTABLE", "STABLE")
    assert rules(add, earlier=state(stable)) == []
    # VOLATILE unless declared otherwise, and CREATE OR REPLACE can make it so
    volatile = immutable.replace(" IMMUTABLE", "")
    assert rules(add, earlier=state(volatile)) == ["add-column-volatile-default"]
    replaced = volatile.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION")
    assert rules(add, earlier=state(immutable, replaced)) == ["add-column-volatile-default"]
    explicit = immutable.replace("IMMUTABLE", "VOLATILE")
    assert rules(add, earlier=state(explicit)) == ["add-column-volatile-default"]


# --- USING: decided by the types, not by its presence ------------------------------------


@pytest.mark.parametrize(
    "using",
    ["", " USING email::text", " USING email", " USING CAST(email AS text)"],
)
def test_a_using_that_only_casts_the_column_is_no_using(using: str) -> None:
    sql = f"ALTER TABLE {{{{schema}}}}.customers ALTER COLUMN email TYPE text{using};"
    assert rules(sql) == []


def test_a_using_that_computes_rewrites_and_says_so() -> None:
    findings = lint(
        "ALTER TABLE {{schema}}.customers ALTER COLUMN email TYPE text USING lower(email);"
    )
    assert [f.rule for f in findings] == ["alter-column-type"]
    assert "USING expression computes every row anew" in findings[0].message
    # a cast to another type than the new one is not a plain cast either
    sql = "ALTER TABLE {{schema}}.customers ALTER COLUMN email TYPE text USING email::varchar(10);"
    assert rules(sql) == ["alter-column-type"]
    # a plain cast to a type that is not binary-coercible: the types' message
    sql = "ALTER TABLE {{schema}}.customers ALTER COLUMN email TYPE int USING email::int;"
    findings = lint(sql)
    assert "from varchar(50) is not binary-coercible" in findings[0].message


async def test_varchar_to_text_using_a_cast_keeps_the_relfilenode(dsn: str) -> None:
    """What the linter now accepts, PostgreSQL does without a rewrite: the table keeps its
    storage file."""
    sql = "ALTER TABLE {{schema}}.customers ALTER COLUMN email TYPE text USING email::text;"
    assert rules(sql) == []
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(
            "CREATE TABLE customers (id bigint PRIMARY KEY, email varchar(50));"
            "INSERT INTO customers SELECT g, 'c' || g FROM generate_series(1, 100) g"
        )
        query = "SELECT relfilenode FROM pg_class WHERE oid = 'customers'::regclass"
        before = await conn.fetchval(query)
        await conn.execute(sql.replace("{{schema}}.", ""))
        assert await conn.fetchval(query) == before
        # and a USING that computes does rewrite (the linter flags it)
        await conn.execute("ALTER TABLE customers ALTER COLUMN email TYPE text USING lower(email)")
        assert await conn.fetchval(query) != before
    finally:
        await conn.close()
