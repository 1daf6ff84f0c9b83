"""``tenantmig lint --fix``: qualifiers added conservatively."""

from __future__ import annotations

import textwrap
from pathlib import Path

import asyncpg
from helpers import MakeMigrations, create_tenants, execute, fetch, fetchval, quote_ident, show, tm

import tenantmig
from tenantmig.lint import LintState, fix_qualifiers, lint_migrations, lint_sql
from tenantmig.source import load_migrations

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


# --- calls of what earlier migrations created (issue 14 item 1) ---------------------------

FOLDER = {
    "V1__ranking.sql": """\
        CREATE FUNCTION hot_rank(score int, created timestamptz) RETURNS int
            LANGUAGE sql IMMUTABLE AS 'SELECT score * 10';
        CREATE SEQUENCE post_ids START 100;
        CREATE TYPE mood AS ENUM ('happy', 'sad');
        CREATE DOMAIN positive AS int CHECK (VALUE > 0);
        """,
    "U1__ranking.sql": """\
        DROP DOMAIN positive;
        DROP TYPE mood;
        DROP SEQUENCE post_ids;
        DROP FUNCTION hot_rank(int, timestamptz);
        """,
    "V2__posts.sql": """\
        CREATE TABLE posts (
            id int PRIMARY KEY DEFAULT nextval('post_ids'),
            score positive NOT NULL CHECK (hot_rank(score, now()) < 1000),
            feeling mood,
            created timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX posts_rank_idx ON posts (hot_rank(score, created));
        INSERT INTO posts (score, feeling) VALUES (1, 'happy'), (2, CAST('sad' AS mood));
        """,
    "U2__posts.sql": "-- tenantmig:allow drop-table the undo of V2\nDROP TABLE posts;\n",
    "V3__view.sql": """\
        CREATE VIEW post_view AS
            SELECT id, hot_rank(score, created) AS rank, feeling::text, lower('X') AS x
            FROM posts;
        SELECT setval('post_ids', 200);
        CREATE FUNCTION post_count() RETURNS bigint LANGUAGE plpgsql AS $$
        BEGIN RETURN (SELECT count(*) FROM post_view WHERE hot_rank(1, now()) > 0); END $$;
        """,
    "U3__view.sql": "DROP FUNCTION post_count();\nDROP VIEW post_view;\n",
}

FIXED = {
    "V1__ranking.sql": """\
        CREATE FUNCTION {{schema}}.hot_rank(score int, created timestamptz) RETURNS int
            LANGUAGE sql IMMUTABLE AS 'SELECT score * 10';
        CREATE SEQUENCE {{schema}}.post_ids START 100;
        CREATE TYPE {{schema}}.mood AS ENUM ('happy', 'sad');
        CREATE DOMAIN {{schema}}.positive AS int CHECK (VALUE > 0);
        """,
    "V2__posts.sql": """\
        CREATE TABLE {{schema}}.posts (
            id int PRIMARY KEY DEFAULT nextval('{{schema}}.post_ids'),
            score {{schema}}.positive NOT NULL CHECK ({{schema}}.hot_rank(score, now()) < 1000),
            feeling {{schema}}.mood,
            created timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX posts_rank_idx ON {{schema}}.posts ({{schema}}.hot_rank(score, created));
        INSERT INTO {{schema}}.posts (score, feeling) VALUES (1, 'happy'), (2, CAST('sad' AS {{schema}}.mood));
        """,  # noqa: E501
    "V3__view.sql": """\
        CREATE VIEW {{schema}}.post_view AS
            SELECT id, {{schema}}.hot_rank(score, created) AS rank, feeling::text, lower('X') AS x
            FROM {{schema}}.posts;
        SELECT setval('{{schema}}.post_ids', 200);
        CREATE FUNCTION {{schema}}.post_count() RETURNS bigint LANGUAGE plpgsql AS $$
        BEGIN RETURN (SELECT count(*) FROM post_view WHERE hot_rank(1, now()) > 0); END $$;
        """,
}


def test_fix_qualifies_calls_of_functions_and_sequences_earlier_migrations_created(
    tmp_path: Path, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(FOLDER)
    fixed = tm("lint", "--fix", "--migrations", str(folder), cwd=tmp_path)
    assert fixed.returncode == 0, show(fixed)
    for name, text in FIXED.items():
        # the body of post_count is a string: it resolves through search_path when called
        assert (folder / name).read_text() == textwrap.dedent(text), name
    again = tm("lint", "--fix", "--migrations", str(folder), cwd=tmp_path)
    assert "fixed" not in again.stdout, show(again)
    findings = lint_migrations(load_migrations(folder))
    assert [f for f in findings if f.rule == "unqualified-name"] == []


def test_unqualified_calls_of_created_functions_are_reported(
    make_migrations: MakeMigrations,
) -> None:
    findings = lint_migrations(load_migrations(make_migrations(FOLDER)))
    calls = sorted((Path(f.path).name, f.line) for f in findings
                   if f.rule == "unqualified-name" and f.message.startswith("function ")
                   and Path(f.path).name.startswith("V"))
    # V1's CREATE FUNCTION, V2's CHECK and index, V3's view and CREATE FUNCTION; not
    # lower(), now(), count() nor the body
    assert calls == [("V1__ranking.sql", 1), ("V2__posts.sql", 1), ("V2__posts.sql", 7),
                     ("V3__view.sql", 1), ("V3__view.sql", 5)]
    assert "{{schema}}.hot_rank" in next(
        f.message for f in findings if f.message.startswith("function hot_rank"))


def test_a_created_function_named_like_a_built_in_is_left_alone() -> None:
    earlier = LintState().after(
        "CREATE FUNCTION lower(x int) RETURNS int LANGUAGE sql AS 'SELECT x';\n"
        "CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'SELECT 1';")
    sql = "SELECT lower('A'), f(), g(), uuid_generate_v4() FROM {{schema}}.t;"
    assert fix_qualifiers(sql, earlier=earlier) == (
        "SELECT lower('A'), {{schema}}.f(), g(), uuid_generate_v4() FROM {{schema}}.t;")
    found = lint_sql(sql, earlier=earlier)
    assert [f.message.split(" is ")[0] for f in found] == ["function f"]


async def test_the_fixed_folder_runs_on_real_tenants(
    tmp_path: Path, make_migrations: MakeMigrations, dsn: str
) -> None:
    folder = make_migrations(FOLDER)
    assert tm("lint", "--fix", "--migrations", str(folder), cwd=tmp_path).returncode == 0
    tenants = ["tenant_a", "tenant_O'Brien \"x\""]
    await create_tenants(dsn, tenants)
    # a shared function and sequence of the same names must not be what the tenants use
    await execute(dsn, "CREATE FUNCTION public.hot_rank(int, timestamptz) RETURNS int "
                       "LANGUAGE sql AS 'SELECT -1'; CREATE SEQUENCE public.post_ids")
    async with tenantmig.Engine(dsn, migrations=folder, shared_schemas=["public"]) as engine:
        report = await engine.upgrade()
        assert report.ok, [(o.tenant, o.message) for o in report.failed]
        down = await engine.downgrade(target=0)
        assert down.ok, [(o.tenant, o.message) for o in down.failed]
        assert (await engine.upgrade()).ok
    for tenant in tenants:
        q = quote_ident(tenant)
        rows = await fetch(dsn, f"SELECT id, rank, feeling FROM {q}.post_view ORDER BY id")
        assert [tuple(r) for r in rows] == [(100, 10, "happy"), (101, 20, "sad")]
        # the body is unqualified: it resolves through the caller's search_path
        conn = await asyncpg.connect(dsn)
        try:
            await conn.execute(f"SET search_path TO {q}")
            assert await conn.fetchval("SELECT post_count()") == 2
        finally:
            await conn.close()
        assert await fetchval(dsn, f"SELECT last_value FROM {q}.post_ids") == 200
        uses = await fetch(
            dsn,
            "SELECT DISTINCT n.nspname FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid "
            "JOIN pg_proc p ON p.oid = d.refobjid JOIN pg_namespace n ON n.oid = p.pronamespace "
            "WHERE r.ev_class = $1::regclass", f"{q}.post_view")
        assert [r["nspname"] for r in uses] == [tenant]
    assert await fetchval(dsn, "SELECT last_value FROM public.post_ids") == 1
