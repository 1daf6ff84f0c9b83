"""Tenant names that need quoting, and names written to break out of the SQL around them.

Includes sessions where ``standard_conforming_strings`` is off, set by the application's pool
or by a migration.
"""

from __future__ import annotations

import asyncpg
import pytest
from helpers import (
    MakeMigrations,
    create_tenants,
    execute,
    fetch,
    fetchval,
    ledger,
    quote_ident,
    relations,
    schemas,
    versions,
)

from tenantmig import Engine

QUOTED_NAMES = [
    "tenant_MixedCase",
    "tenant_O'Brien \"x\"",
    "tenant_" + "x" * 56,
    "tenant_sp ace;semi",
]


async def test_tenant_names_that_need_quoting(dsn: str, make_migrations: MakeMigrations) -> None:
    assert len(QUOTED_NAMES[2].encode()) == 63
    folder = make_migrations({
        "V1__tables.sql": """\
            CREATE TABLE {{schema}}.items (id int PRIMARY KEY, n int, owner text);
            INSERT INTO {{schema}}.items SELECT g, g FROM generate_series(1, 30) g;
            CREATE FUNCTION {{schema}}.double(x int) RETURNS int LANGUAGE sql AS $$ SELECT x * 2 $$;
            """,
        "V2__index.sql": """\
            -- tenantmig:no-transaction
            CREATE INDEX CONCURRENTLY items_n_idx ON {{schema}}.items (n);
            """,
        "V3__owner.py": """\
            async def up(ctx):
                await ctx.execute("UPDATE {{schema}}.items SET owner = $1", ctx.schema)
            """,
        "V4__backfill.py": """\
            transactional = False

            async def up(ctx):
                await ctx.backfill("items", "n = {{schema}}.double(n)", batch_size=7)
            """,
    })
    await create_tenants(dsn, ["tenant_mixedcase_decoy", *QUOTED_NAMES])
    async with Engine(dsn, migrations=folder, concurrency=4) as engine:
        report = await engine.upgrade(tenants=QUOTED_NAMES)
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    assert [o.tenant for o in report.outcomes] == QUOTED_NAMES
    for t in QUOTED_NAMES:
        assert await versions(dsn, t) == [1, 2, 3, 4], t
        assert await relations(dsn, t) >= {"items", "items_n_idx", "tenantmig_history"}, t
        rows = await fetch(dsn, f"SELECT n, owner FROM {quote_ident(t)}.items ORDER BY id")
        assert [r["n"] for r in rows] == [2 * i for i in range(1, 31)], t
        assert {r["owner"] for r in rows} == {t}
        valid = await fetchval(
            dsn, "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = $1 AND c.relname = 'items_n_idx'", t)
        assert valid is True, t
    assert await relations(dsn, "tenant_mixedcase_decoy") == set()
    assert await relations(dsn, "public") == set()
    assert await schemas(dsn) == {"tenant_mixedcase_decoy", *QUOTED_NAMES, "tenantmig"}
    entries = await ledger(dsn, report.run_id)
    assert set(entries) == set(QUOTED_NAMES)
    # Four steps each (a batch, the concurrent index, two Python migrations), none retried.
    assert {o.attempts for o in report.outcomes} == {r["attempts"] for r in entries.values()} \
        == {1}


# Names written to end a string constant around {{schema}} and run SQL of their own.
E_STRING_BREAKER = "tenant_q\\'; CREATE TABLE public.pwned_e (); --"


BODY_BREAKER = "tenant_',true);CREATE TABLE public.pwned_do();PERFORM concat('a"


DOLLAR_BREAKER = "tenant_$$; CREATE TABLE public.pwned_dollar (); --"


async def test_names_that_would_end_a_string_constant_stay_inside_or_are_refused(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({
        "V1__note.sql": """\
            CREATE TABLE {{schema}}.t1 (id int);
            CREATE TABLE {{schema}}.notes (note text);
            COMMENT ON TABLE {{schema}}.t1 IS E'owned by {{schema}}';
            """,
        "V2__body.sql": """\
            DO $$ BEGIN
                INSERT INTO {{schema}}.notes VALUES ('{{schema}}');
                PERFORM pg_catalog.set_config('app.note', E'{{schema}}', true);
            END $$;
            CREATE FUNCTION {{schema}}.n() RETURNS int LANGUAGE sql
                AS $body$ SELECT count(*)::int FROM {{schema}}.notes $body$;
            """,
        "V3__python.py": """\
            async def up(ctx):
                await ctx.execute("COMMENT ON COLUMN {{schema}}.t1.id IS 'in {{schema}}'")
            """,
    })
    safe = ["tenant_plain", "tenant_O'Brien", E_STRING_BREAKER, BODY_BREAKER]
    await create_tenants(dsn, [*safe, DOLLAR_BREAKER])
    async with Engine(dsn, migrations=folder, concurrency=2) as engine:
        report = await engine.upgrade()
    outcomes = {o.tenant: o for o in report.outcomes}

    # In '...' and E'...', at the top level or inside a DO or function body, the name is
    # escaped for the string and stays a value.
    for t in safe:
        assert outcomes[t].status == "succeeded", (t, outcomes[t].message)
        assert await versions(dsn, t) == [1, 2, 3], t
        table = f"{quote_ident(t)}.t1"
        assert await fetchval(dsn, "SELECT obj_description($1::regclass)", table) == \
            f"owned by {quote_ident(t)}"
        assert await fetchval(dsn, "SELECT col_description($1::regclass, 1)", table) == \
            f"in {quote_ident(t)}"
        assert await fetchval(dsn, f"SELECT note FROM {quote_ident(t)}.notes") == \
            quote_ident(t)
        assert await fetchval(dsn, f"SELECT {quote_ident(t)}.n()") == 1
    # A name holding the $$ that quotes a body holding {{schema}} would end that body:
    # that tenant fails at V2 before anything of it is sent.
    refused = outcomes[DOLLAR_BREAKER]
    assert refused.status == "failed" and refused.failing_version == 2, refused
    assert "inside a body quoted with $$" in (refused.message or ""), refused.message
    assert await versions(dsn, DOLLAR_BREAKER) == [1]
    assert await relations(dsn, "public") == set()


@pytest.mark.parametrize("pgbouncer", [False, True], ids=["session", "pgbouncer-mode"])
async def test_app_pool_without_standard_conforming_strings_cannot_be_broken_out_of(
    dsn: str, make_migrations: MakeMigrations, pgbouncer: bool
) -> None:
    """With standard_conforming_strings off a backslash escapes a quote inside '...', so
    the doubled quotes of a name like E_STRING_BREAKER would end the string: tenantmig
    turns the setting on in the sessions it uses, and the application's pool gets its
    own setting back."""
    folder = make_migrations({
        "V1__note.sql": """\
            CREATE TABLE {{schema}}.t1 (id int);
            COMMENT ON TABLE {{schema}}.t1 IS 'owned by {{schema}}';
            """,
        "V2__column.sql": """\
            -- tenantmig:no-transaction
            COMMENT ON COLUMN {{schema}}.t1.id IS 'id of {{schema}}';
            """ if not pgbouncer else
            "COMMENT ON COLUMN {{schema}}.t1.id IS 'id of {{schema}}';\n",
        "V3__python.py": """\
            async def up(ctx):
                await ctx.execute("CREATE TABLE {{schema}}.t3 (note text DEFAULT '{{schema}}')")
            """,
    })
    tenants = ["tenant_plain", E_STRING_BREAKER]
    await create_tenants(dsn, tenants)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=3,
                                     server_settings={"standard_conforming_strings": "off"})
    try:
        async with Engine(pool=pool, migrations=folder, concurrency=2,
                          pgbouncer=pgbouncer) as engine:
            report = await engine.upgrade()
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW standard_conforming_strings") == "off"
    finally:
        await pool.close()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    assert await relations(dsn, "public") == set()
    for t in tenants:
        table = f"{quote_ident(t)}.t1"
        assert await versions(dsn, t) == [1, 2, 3], t
        assert await fetchval(dsn, "SELECT obj_description($1::regclass)", table) == \
            f"owned by {quote_ident(t)}"
        assert await fetchval(dsn, "SELECT col_description($1::regclass, 1)", table) == \
            f"id of {quote_ident(t)}"
        assert await fetchval(
            dsn, f"INSERT INTO {quote_ident(t)}.t3 DEFAULT VALUES RETURNING note"
        ) == quote_ident(t)


@pytest.mark.parametrize("first_fails", [False, True], ids=["succeeds", "fails-later"])
async def test_a_migration_turning_standard_conforming_strings_off_cannot_open_the_next_tenant(
    dsn: str, make_migrations: MakeMigrations, first_fails: bool
) -> None:
    """The server reads a whole batch before it runs any of it, with the connection's
    settings of that moment. A batchable migration that turns standard_conforming_strings
    off for the session (in a DO block, where tenantmig cannot see it) must not leave the
    next tenant's batch on that connection to be read that way: a backslash would then
    escape the quote that ends E_STRING_BREAKER inside '...'. Whether the tenant that
    turned it off succeeded or failed after it."""
    folder = make_migrations({
        "V1__note.sql": """\
            CREATE TABLE {{schema}}.t1 (id int);
            COMMENT ON TABLE {{schema}}.t1 IS 'owned by {{schema}}';
            DO $$ BEGIN
                PERFORM pg_catalog.set_config('standard_conforming_strings', 'off', false);
            END $$;
            """,
        "V2__more.sql": "CREATE TABLE {{schema}}.t2 (id int);\n",
    })
    first = "tenant_a"  # before E_STRING_BREAKER, on the same (only) connection
    await create_tenants(dsn, [first, E_STRING_BREAKER])
    if first_fails:  # V1 commits, then V2 fails: the batch stops half-way
        await execute(dsn, f"CREATE TABLE {quote_ident(first)}.t2 (id int)")
    async with Engine(dsn, migrations=folder, concurrency=1, retries=0) as engine:
        report = await engine.upgrade()
    outcomes = {o.tenant: o for o in report.outcomes}
    assert await relations(dsn, "public") == set()
    assert outcomes[first].status == ("failed" if first_fails else "succeeded")
    assert await versions(dsn, first) == ([1] if first_fails else [1, 2])
    breaker = outcomes[E_STRING_BREAKER]
    assert breaker.status == "succeeded", breaker.message
    assert await versions(dsn, E_STRING_BREAKER) == [1, 2]
    assert await fetchval(dsn, "SELECT obj_description($1::regclass)",
                          f"{quote_ident(E_STRING_BREAKER)}.t1") == \
        f"owned by {quote_ident(E_STRING_BREAKER)}"
