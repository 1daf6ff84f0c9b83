"""The engine end to end, through the Python API, against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from helpers import create_tenants, execute, fetch, fetchval, quote_ident, relations, schemas

import tenantmig
from tenantmig import DriftError, Engine, TargetError, load_migrations, provision
from tenantmig.lint import lint_migrations

MakeMigrations = Callable[..., Path]

# --- helpers ------------------------------------------------------------------------------





async def history(dsn: str, tenant: str) -> list[asyncpg.Record] | None:
    """The tenant's history rows, oldest version first; None when it has no history table."""
    table = f"{quote_ident(tenant)}.tenantmig_history"
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            return None
        return list(await conn.fetch(
            f"SELECT version, description, checksum, run_id, applied_at FROM {table} "
            "ORDER BY version"))
    finally:
        await conn.close()


async def versions(dsn: str, tenant: str) -> list[int] | None:
    rows = await history(dsn, tenant)
    return None if rows is None else [r["version"] for r in rows]


async def runs(dsn: str) -> list[asyncpg.Record]:
    """Rows of tenantmig.runs, oldest first ([] when the control schema does not exist)."""
    if not await fetchval(dsn, "SELECT to_regclass('tenantmig.runs') IS NOT NULL"):
        return []
    return await fetch(dsn, "SELECT * FROM tenantmig.runs ORDER BY started_at, run_id")


async def ledger(dsn: str, run_id: str | None) -> dict[str, asyncpg.Record]:
    """The run's ledger rows by tenant."""
    assert run_id is not None, "no run was recorded"
    rows = await fetch(dsn, "SELECT * FROM tenantmig.ledger WHERE run_id = $1", run_id)
    return {r["tenant"]: r for r in rows}


async def count_relations_named(dsn: str, name: str) -> int:
    return int(await fetchval(dsn, "SELECT count(*) FROM pg_class WHERE relname = $1", name))


async def create_control_schema(dsn: str, folder: Path) -> None:
    """Let a first run create the control schema, on a schema no test targets.

    Runners creating the control schema at the same moment race (see
    test_control_schema_created_by_runners_at_once); tests about other races start
    after it exists.
    """
    await create_tenants(dsn, ["warmup_1"])
    async with Engine(dsn, migrations=folder, prefix="warmup_") as engine:
        assert (await engine.upgrade()).ok


async def fast_deadlock_detection(dsn: str) -> None:
    """New connections to this test's database detect deadlocks after 100 ms, not 1 s."""
    await execute(dsn, "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I SET deadlock_timeout "
                  "= %L', current_database(), '100ms'); END $$")


def names(n: int, prefix: str = "tenant_") -> list[str]:
    return [f"{prefix}{i:03d}" for i in range(n)]


ONCE_ONLY = {
    # Each would fail if applied twice to the same tenant.
    "V1__tables.sql": """\
        CREATE TABLE {{schema}}.t1 (id int);
        CREATE TABLE {{schema}}.counter (v int PRIMARY KEY);
        INSERT INTO {{schema}}.counter VALUES (1);
        """,
    "V2__second.sql": """\
        ALTER TABLE {{schema}}.t1 ADD COLUMN note text;
        INSERT INTO {{schema}}.counter VALUES (2);
        """,
    "V3__python.py": """\
        async def up(ctx):
            await ctx.execute("INSERT INTO {{schema}}.counter VALUES ($1)", 3)
            await ctx.execute("CREATE TABLE {{schema}}.t3 (id int)")
        """,
    "V4__fourth.sql": """\
        CREATE TABLE {{schema}}.t4 (id int);
        INSERT INTO {{schema}}.counter VALUES (4);
        """,
}


async def assert_exactly_once(dsn: str, tenant: str, head: int = 4) -> None:
    assert await versions(dsn, tenant) == list(range(1, head + 1)), tenant
    counter = await fetch(dsn, f"SELECT v FROM {quote_ident(tenant)}.counter ORDER BY v")
    assert [r["v"] for r in counter] == list(range(1, head + 1)), tenant


# --- the basics ---------------------------------------------------------------------------


async def test_every_tenant_reaches_head(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    tenants = names(5)
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, concurrency=3) as engine:
        report = await engine.upgrade()

    files = load_migrations(folder)
    assert report.ok and not report.nothing_to_do
    assert report.command == "up"
    assert report.target == 4
    assert report.counts() == {"succeeded": 5, "failed": 0, "pending": 0, "skipped": 0}
    assert report.applied_count == 20
    assert [o.tenant for o in report.outcomes] == tenants
    for o in report.outcomes:
        assert o.applied == (1, 2, 3, 4)
        assert o.version_before is None and o.version_reached == 4
        assert o.attempts == 1

    expected = [(m.version, m.description, m.checksum) for m in files.migrations]
    for t in tenants:
        rows = await history(dsn, t)
        assert rows is not None
        assert [(r["version"], r["description"], r["checksum"]) for r in rows] == expected
        assert {r["run_id"] for r in rows} == {report.run_id}
        await assert_exactly_once(dsn, t)
        assert await relations(dsn, t) >= {"t1", "t3", "t4", "counter", "tenantmig_history"}

    (run,) = await runs(dsn)
    assert run["run_id"] == report.run_id
    assert run["status"] == "succeeded"
    assert run["tenants"] == 5
    assert run["finished_at"] is not None
    entries = await ledger(dsn, report.run_id)
    assert set(entries) == set(tenants)
    for r in entries.values():
        assert r["status"] == "succeeded"
        assert r["version_reached"] == 4 and r["target"] == 4
        assert r["failing_version"] is None and r["sqlstate"] is None
        assert r["attempts"] == 1
        assert r["started_at"] is not None and r["finished_at"] is not None


async def test_decoy_schemas_untouched(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    decoys = ["tenantx_1", "tenant", "Tenant_upper", "xtenant_1"]
    await create_tenants(dsn, ["tenant_a", "tenant_b", *decoys])
    before_public = await relations(dsn, "public")
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert report.ok
    assert sorted(o.tenant for o in report.outcomes) == ["tenant_a", "tenant_b"]
    for decoy in [*decoys, "public"]:
        assert await history(dsn, decoy) is None, decoy
    for decoy in decoys:
        assert await relations(dsn, decoy) == set(), decoy
    assert await relations(dsn, "public") == before_public == set()
    assert await schemas(dsn) == {"tenant_a", "tenant_b", *decoys, "tenantmig"}
    assert {"runs", "ledger"} <= await relations(dsn, "tenantmig")
    assert set(await ledger(dsn, report.run_id)) == {"tenant_a", "tenant_b"}
    for t in ("tenant_a", "tenant_b"):
        await assert_exactly_once(dsn, t)


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


# --- targeting ------------------------------------------------------------------------------


async def test_explicit_subset(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b", "tenant_c", "tenant_d"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(tenants=["tenant_c", "tenant_a"])
    assert report.ok
    assert [o.tenant for o in report.outcomes] == ["tenant_c", "tenant_a"]
    await assert_exactly_once(dsn, "tenant_a")
    await assert_exactly_once(dsn, "tenant_c")
    for t in ("tenant_b", "tenant_d"):
        assert await history(dsn, t) is None
        assert await relations(dsn, t) == set()
    assert set(await ledger(dsn, report.run_id)) == {"tenant_a", "tenant_c"}
    assert (await runs(dsn))[0]["tenants"] == 2



async def test_upgrade_refuses_a_plan_made_for_other_tenants_or_another_target(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    """upgrade(plan=...) runs the plan; tenants or a target given with it must be the ones
    the plan was made for, not silently ignored."""
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        plan = await engine.plan(["tenant_a"], target=1)
        with pytest.raises(ValueError, match="plan to 1"):
            await engine.upgrade(["tenant_a"], target=2, plan=plan)
        with pytest.raises(ValueError, match="other tenants"):
            await engine.upgrade(["tenant_b"], plan=plan)
        assert await history(dsn, "tenant_a") is None and await history(dsn, "tenant_b") is None
        report = await engine.upgrade(["tenant_a"], target=1, plan=plan)
    assert report.ok and [o.tenant for o in report.outcomes] == ["tenant_a"]
    assert await versions(dsn, "tenant_a") == [1]
    assert await history(dsn, "tenant_b") is None

async def test_exclude(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b", "tenant_c"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(exclude=["tenant_b"])
    assert report.ok
    assert [o.tenant for o in report.outcomes] == ["tenant_a", "tenant_c"]
    await assert_exactly_once(dsn, "tenant_a")
    await assert_exactly_once(dsn, "tenant_c")
    assert await relations(dsn, "tenant_b") == set()


async def test_prefix(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["acme_1", "acme_2", "acmex2", "tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(prefix="acme_")
    assert report.ok
    assert [o.tenant for o in report.outcomes] == ["acme_1", "acme_2"]
    await assert_exactly_once(dsn, "acme_1")
    await assert_exactly_once(dsn, "acme_2")
    assert await relations(dsn, "tenant_a") == set()
    assert await relations(dsn, "acmex2") == set()


async def test_unknown_tenant_is_refused_before_anything(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        first = await engine.upgrade(tenants=["tenant_a"], target=1)
        assert first.ok
        before = await runs(dsn)
        with pytest.raises(TargetError, match="tenant_nope"):
            await engine.upgrade(tenants=["tenant_b", "tenant_nope", "tenant_a"])
    assert await runs(dsn) == before
    assert len(before) == 1
    assert await versions(dsn, "tenant_a") == [1]
    assert await history(dsn, "tenant_b") is None
    assert await relations(dsn, "tenant_b") == set()


@pytest.mark.parametrize("bad", ["public", "tenantmig", "pg_catalog"])
async def test_non_tenant_schema_is_refused(
    dsn: str, make_migrations: MakeMigrations, bad: str,
) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        await engine.upgrade(target=1)
        with pytest.raises(TargetError):
            await engine.upgrade(tenants=[bad])
    assert await relations(dsn, "public") == set()
    assert len(await runs(dsn)) == 1


async def test_unknown_target_version(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(TargetError):
            await engine.upgrade(target=7)
    assert await history(dsn, "tenant_a") is None
    assert await runs(dsn) == []


async def test_target(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(target=2)
        assert report.ok and report.target == 2
        assert all(o.version_reached == 2 for o in report.outcomes)
        for t in ("tenant_a", "tenant_b"):
            assert await versions(dsn, t) == [1, 2]
        report = await engine.upgrade()
        assert report.ok and report.applied_count == 4
    for t in ("tenant_a", "tenant_b"):
        await assert_exactly_once(dsn, t)


async def test_no_op_rerun(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, names(3))
    async with Engine(dsn, migrations=folder) as engine:
        first = await engine.upgrade()
        assert first.ok and not first.nothing_to_do
        histories = {t: await history(dsn, t) for t in names(3)}
        second = await engine.upgrade()
    assert second.ok
    assert second.nothing_to_do
    assert second.run_id is None
    assert second.applied_count == 0
    assert second.counts()["skipped"] == 3
    assert len(await runs(dsn)) == 1
    for t in names(3):
        assert await history(dsn, t) == histories[t]


# --- exactly once -------------------------------------------------------------------------


async def test_two_runners_at_the_same_moment(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    tenants = names(30)
    await create_tenants(dsn, tenants)
    await create_control_schema(dsn, folder)
    a = Engine(dsn, migrations=folder, concurrency=4)
    b = Engine(dsn, migrations=folder, concurrency=4)
    try:
        ra, rb = await asyncio.gather(a.upgrade(), b.upgrade())
    finally:
        await a.close()
        await b.close()
    assert ra.ok, [(o.tenant, o.sqlstate, o.message) for o in ra.failed]
    assert rb.ok, [(o.tenant, o.sqlstate, o.message) for o in rb.failed]
    for t in tenants:
        await assert_exactly_once(dsn, t)
    # Between them the two runs applied every version once.
    applied: dict[str, list[int]] = {t: [] for t in tenants}
    for report in (ra, rb):
        for o in report.outcomes:
            applied[o.tenant].extend(o.applied)
    assert all(sorted(v) == [1, 2, 3, 4] for v in applied.values())
    assert len(await runs(dsn)) == 3  # the warm-up and these two


async def test_two_runners_non_transactional(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        **ONCE_ONLY,
        "V5__index.sql": """\
            -- tenantmig:no-transaction
            CREATE INDEX CONCURRENTLY t1_id_idx ON {{schema}}.t1 (id);
            """,
        "V6__after.sql": "INSERT INTO {{schema}}.counter VALUES (6);\n",
    })
    tenants = names(10)
    await create_tenants(dsn, tenants)
    await create_control_schema(dsn, folder)
    # Should two runners ever deadlock, detect it fast; this test is about exactly once.
    await fast_deadlock_detection(dsn)
    a = Engine(dsn, migrations=folder, concurrency=3, retries=8, retry_wait=(0.05, 0.5))
    b = Engine(dsn, migrations=folder, concurrency=3, retries=8, retry_wait=(0.05, 0.5))
    try:
        ra, rb = await asyncio.gather(a.upgrade(), b.upgrade())
    finally:
        await a.close()
        await b.close()
    assert ra.ok, [(o.tenant, o.sqlstate, o.message) for o in ra.failed]
    assert rb.ok, [(o.tenant, o.sqlstate, o.message) for o in rb.failed]
    for t in tenants:
        assert await versions(dsn, t) == [1, 2, 3, 4, 5, 6]
        counter = await fetch(dsn, f"SELECT v FROM {quote_ident(t)}.counter ORDER BY v")
        assert [r["v"] for r in counter] == [1, 2, 3, 4, 6]


async def wait_until(dsn: str, sql: str, *args: Any, within: float = 10.0) -> None:
    """Poll until *sql* returns true."""
    deadline = asyncio.get_running_loop().time() + within
    while not await fetchval(dsn, sql, *args):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for: {sql}")
        await asyncio.sleep(0.02)


async def test_control_schema_created_by_runners_at_once(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(ONCE_ONLY)
    # Two first runs at once on a database without the control schema; a few rounds,
    # since it is a race (it loses almost every time on one round).
    for attempt in range(5):
        pair = [f"tenant_p{attempt}_a", f"tenant_p{attempt}_b"]
        results = await asyncio.gather(*(provision(dsn, t, migrations=folder) for t in pair),
                                       return_exceptions=True)
        for r in results:
            assert isinstance(r, tenantmig.Report), repr(r)
            assert r.ok
        for t in pair:
            await assert_exactly_once(dsn, t)
        await execute(dsn, "DROP SCHEMA tenantmig CASCADE")


async def test_second_runner_does_not_deadlock_a_concurrent_index_build(
        dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
        "V2__index.sql": """\
            -- tenantmig:no-transaction
            CREATE INDEX CONCURRENTLY t_id_idx ON {{schema}}.t (id);
            """,
    })
    await create_tenants(dsn, ["tenant_a"])
    await fast_deadlock_detection(dsn)
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(target=1)).ok
    # A writer keeps the first runner's index build waiting, so the second runner meets it.
    writer = await asyncpg.connect(dsn)
    tx = writer.transaction()
    await tx.start()
    await writer.execute("INSERT INTO tenant_a.t VALUES (1)")
    a = Engine(dsn, migrations=folder, retries=0)
    b = Engine(dsn, migrations=folder, retries=0)
    try:
        task_a = asyncio.ensure_future(a.upgrade())
        await wait_until(dsn, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity "
                         "WHERE query LIKE '%CREATE INDEX CONCURRENTLY%' "
                         "AND wait_event_type = 'Lock' AND pid <> pg_backend_pid())")
        task_b = asyncio.ensure_future(b.upgrade())
        # The second runner polls for the tenant lock (never waits inside a statement,
        # which would hold a snapshot the index build waits for); give it time to meet.
        await asyncio.sleep(1.0)
        assert not task_b.done()
        await tx.commit()
        ra, rb = await asyncio.gather(task_a, task_b)
    finally:
        await writer.close()
        await a.close()
        await b.close()
    assert ra.ok, [(o.tenant, o.sqlstate, o.message) for o in ra.failed]
    assert rb.ok, [(o.tenant, o.sqlstate, o.message) for o in rb.failed]
    assert await versions(dsn, "tenant_a") == [1, 2]
    assert await index_valid(dsn, "tenant_a", "t_id_idx") is True


# --- refusals ----------------------------------------------------------------------------


async def test_drift_refused_before_any_tenant(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({k: v for k, v in ONCE_ONLY.items() if k < "V3"})
    tenants = ["tenant_a", "tenant_b", "tenant_c"]
    await create_tenants(dsn, [*tenants, "tenant_new"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(tenants=tenants)).ok
    before = {t: await history(dsn, t) for t in tenants}
    run_count = len(await runs(dsn))

    v1 = folder / "V1__tables.sql"
    v1.write_text(v1.read_text() + "-- an innocent comment\n")
    make_migrations({"V3__python.py": ONCE_ONLY["V3__python.py"]})
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(DriftError) as info:
            await engine.upgrade()
    message = str(info.value)
    assert "V1__tables.sql" in message
    for t in tenants:
        assert t in message
    assert "tenant_new" not in message
    assert info.value.drifted == {1: tenants}
    assert len(await runs(dsn)) == run_count
    for t in tenants:
        assert await history(dsn, t) == before[t]
        assert "t3" not in await relations(dsn, t)
    assert await history(dsn, "tenant_new") is None


async def test_applied_version_without_file_is_drift(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({k: v for k, v in ONCE_ONLY.items() if k < "V3"})
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade()).ok
    (folder / "V2__second.sql").unlink()
    make_migrations({"V3__python.py": ONCE_ONLY["V3__python.py"]})
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(DriftError, match="version 2") as info:
            await engine.upgrade()
    assert info.value.drifted == {2: ["tenant_a"]}
    assert await versions(dsn, "tenant_a") == [1, 2]
    assert len(await runs(dsn)) == 1


# --- failures ------------------------------------------------------------------------------


async def test_sql_forgetting_schema_fails_and_leaks_nothing(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        "V1__ok.sql": "CREATE TABLE {{schema}}.ok1 (id int);\n",
        "V2__leaky.sql": """\
            CREATE TABLE {{schema}}.ok2 (id int);
            -- tenantmig:allow unqualified-name test: the empty search_path must reject it
            CREATE TABLE leak (id int);
            """,
    })
    tenants = names(3)
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert not report.ok
    assert len(report.failed) == 3
    for o in report.failed:
        assert o.sqlstate == "3F000"
        assert o.failing_version == 2
        assert o.version_reached == 1
        assert o.applied == (1,)
    for t in tenants:
        assert await versions(dsn, t) == [1]
        assert await relations(dsn, t) == {"ok1", "tenantmig_history", "tenantmig_history_pkey"}
    assert await count_relations_named(dsn, "leak") == 0
    assert await count_relations_named(dsn, "ok2") == 0
    assert await relations(dsn, "public") == set()
    rows = await ledger(dsn, report.run_id)
    assert {r["status"] for r in rows.values()} == {"failed"}
    assert {r["sqlstate"] for r in rows.values()} == {"3F000"}
    (run,) = await runs(dsn)
    assert run["status"] == "failed"


async def test_unsafe_migration_raises_lint_error_before_anything(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        "V1__things.sql": "CREATE TABLE {{schema}}.things (id int, n int);\n",
        "V2__check.sql": "ALTER TABLE {{schema}}.things ADD CONSTRAINT things_n_positive "
                         "CHECK (n > 0);\n",
    })
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(tenantmig.LintError) as caught:
            await engine.upgrade()
    assert "V2__check.sql:1 constraint-not-valid" in str(caught.value)
    for t in ("tenant_a", "tenant_b"):
        assert await relations(dsn, t) == set()
    assert await schemas(dsn) == {"tenant_a", "tenant_b"}  # no control schema
    assert await runs(dsn) == []


@pytest.mark.parametrize("transactional", [True, False])
async def test_python_forgetting_schema_fails(dsn: str, make_migrations: MakeMigrations,
                                              transactional: bool) -> None:
    folder = make_migrations({
        "V1__ok.sql": "CREATE TABLE {{schema}}.ok1 (id int);\n",
        "V2__leaky.py": f"""\
            transactional = {transactional}

            async def up(ctx):
                await ctx.conn.execute("CREATE TABLE leak2 (id int)")
            """,
    })
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert not report.ok
    assert {o.tenant for o in report.failed} == {"tenant_a", "tenant_b"}
    assert {o.sqlstate for o in report.failed} == {"3F000"}
    assert {o.failing_version for o in report.failed} == {2}
    assert await count_relations_named(dsn, "leak2") == 0
    assert await relations(dsn, "public") == set()
    for t in ("tenant_a", "tenant_b"):
        assert await versions(dsn, t) == [1]


DATA_MIGRATIONS = {
    "V1__things.sql": """\
        CREATE TABLE {{schema}}.things (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n int);
        INSERT INTO {{schema}}.things (n) VALUES (1), (2);
        """,
    "V2__check.sql": """\
        -- tenantmig:allow constraint-not-valid test: the scan must fail (23514) on bad rows
        ALTER TABLE {{schema}}.things ADD CONSTRAINT things_n_positive CHECK (n > 0);
        """,
    "V3__more.sql": "CREATE TABLE {{schema}}.more (id int);\n",
}


async def migrate_with_bad_data(dsn: str, folder: Path, tenants: list[str],
                                bad: list[str]) -> tenantmig.Report:
    async with Engine(dsn, migrations=folder, concurrency=4) as engine:
        assert (await engine.upgrade(target=1)).ok
        for t in bad:
            await execute(dsn, f"INSERT INTO {quote_ident(t)}.things (n) VALUES (-1)")
        return await engine.upgrade()


async def test_tenant_data_failure_others_go_on(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(DATA_MIGRATIONS)
    tenants = names(10)
    bad = [tenants[3], tenants[7]]
    await create_tenants(dsn, tenants)
    report = await migrate_with_bad_data(dsn, folder, tenants, bad)
    assert not report.ok
    assert report.counts() == {"succeeded": 8, "failed": 2, "pending": 0, "skipped": 0}
    assert sorted(o.tenant for o in report.failed) == bad
    for o in report.failed:
        assert o.sqlstate == "23514"
        assert o.failing_version == 2
        assert o.version_before == 1 and o.version_reached == 1
        assert o.applied == ()
        assert o.attempts == 1
        assert o.message and "things_n_positive" in o.message
    for t in tenants:
        expected = [1] if t in bad else [1, 2, 3]
        assert await versions(dsn, t) == expected, t
    rows = await ledger(dsn, report.run_id)
    assert set(rows) == set(tenants)
    for t, r in rows.items():
        if t in bad:
            assert r["status"] == "failed"
            assert r["sqlstate"] == "23514"
            assert r["failing_version"] == 2
            assert r["version_reached"] == 1
            assert "things_n_positive" in r["message"]
        else:
            assert r["status"] == "succeeded" and r["version_reached"] == 3
            assert r["sqlstate"] is None
    last = (await runs(dsn))[-1]
    assert last["run_id"] == report.run_id and last["status"] == "failed"


async def test_max_failures_leaves_rest_pending(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__ok.sql": "CREATE TABLE {{schema}}.ok1 (id int);\n",
        "V2__boom.sql": "SELECT 1 / 0 FROM {{schema}}.ok1 UNION ALL SELECT 1 / 0;\n",
    })
    tenants = names(8)
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, concurrency=1, max_failures=1) as engine:
        report = await engine.upgrade()
    assert not report.ok
    assert len(report.failed) == 2
    assert len(report.pending) == 6
    assert {o.sqlstate for o in report.failed} == {"22012"}
    rows = await ledger(dsn, report.run_id)
    assert sorted(r["status"] for r in rows.values()) == ["failed"] * 2 + ["pending"] * 6
    for o in report.pending:
        assert await history(dsn, o.tenant) is None


# --- transient errors ------------------------------------------------------------------------

LOCKABLE = {
    "V1__things.sql": "CREATE TABLE {{schema}}.things (id int);\n",
    "V2__column.sql": "ALTER TABLE {{schema}}.things ADD COLUMN note text;\n",
}


async def hold_lock(dsn: str, tenant: str) -> tuple[asyncpg.Connection, Any]:
    conn = await asyncpg.connect(dsn)
    tx = conn.transaction()
    await tx.start()
    await conn.execute(f"LOCK TABLE {quote_ident(tenant)}.things IN ACCESS EXCLUSIVE MODE")
    return conn, tx


async def test_lock_timeout_is_retried_until_it_succeeds(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(LOCKABLE)
    tenants = names(4)
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, lock_timeout="200ms", retries=10,
                      retry_wait=(0.05, 0.3)) as engine:
        assert (await engine.upgrade(target=1)).ok
        conn, tx = await hold_lock(dsn, tenants[1])

        async def release() -> None:
            await asyncio.sleep(1.0)
            await tx.rollback()
            await conn.close()

        releaser = asyncio.create_task(release())
        try:
            report = await engine.upgrade()
        finally:
            await releaser
    assert report.ok, [(o.tenant, o.sqlstate, o.message) for o in report.failed]
    by_tenant = {o.tenant: o for o in report.outcomes}
    assert by_tenant[tenants[1]].attempts > 1
    assert by_tenant[tenants[1]].seconds >= 0.8
    assert by_tenant[tenants[0]].attempts == 1
    for t in tenants:
        assert await versions(dsn, t) == [1, 2]
    assert (await ledger(dsn, report.run_id))[tenants[1]]["attempts"] > 1


async def test_lock_timeout_without_retries_fails(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(LOCKABLE)
    tenants = names(3)
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, lock_timeout="200ms", retries=0) as engine:
        assert (await engine.upgrade(target=1)).ok
        conn, tx = await hold_lock(dsn, tenants[0])
        try:
            report = await engine.upgrade()
        finally:
            await tx.rollback()
            await conn.close()
    assert not report.ok
    (failed,) = report.failed
    assert failed.tenant == tenants[0]
    assert failed.sqlstate == "55P03"
    assert failed.attempts == 1
    assert failed.failing_version == 2
    assert await versions(dsn, tenants[0]) == [1]
    assert await versions(dsn, tenants[1]) == [1, 2]
    assert (await ledger(dsn, report.run_id))[tenants[0]]["sqlstate"] == "55P03"


async def test_lock_timeout_directive_overrides_engine(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        **LOCKABLE,
        "V2__column.sql": "-- tenantmig:lock-timeout=100ms\n" + LOCKABLE["V2__column.sql"],
    })
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder, lock_timeout="30s", retries=0) as engine:
        assert (await engine.upgrade(target=1)).ok
        conn, tx = await hold_lock(dsn, "tenant_a")
        try:
            report = await asyncio.wait_for(engine.upgrade(), timeout=10)
        finally:
            await tx.rollback()
            await conn.close()
    (failed,) = report.failed
    assert failed.sqlstate == "55P03"
    assert failed.seconds < 5


# --- non-transactional migrations ---------------------------------------------------------------

INDEXED = {
    "V1__things.sql": """\
        CREATE TABLE {{schema}}.things (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, code int);
        INSERT INTO {{schema}}.things (code) SELECT g FROM generate_series(1, 100) g;
        """,
    "V2__index.sql": """\
        -- tenantmig:no-transaction
        -- tenantmig:lock-timeout=5s
        CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS things_code_key ON {{schema}}.things (code);
        """,
    "V3__after.sql": "CREATE TABLE {{schema}}.after_index (id int);\n",
}


async def index_valid(dsn: str, tenant: str, name: str) -> bool | None:
    return await fetchval(  # type: ignore[no-any-return]
        dsn, "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        tenant, name)


async def test_non_transactional_concurrent_index(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(INDEXED)
    tenants = names(3)
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.sqlstate, o.message) for o in report.failed]
    for t in tenants:
        assert await versions(dsn, t) == [1, 2, 3]
        assert await index_valid(dsn, t, "things_code_key") is True
    assert await relations(dsn, "public") == set()


async def test_invalid_index_left_behind_is_rebuilt(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(INDEXED)
    tenants = ["tenant_a", "tenant_b"]
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(target=1)).ok
        # A failed earlier build: duplicates make the unique build fail, leaving it INVALID.
        await execute(dsn, "INSERT INTO tenant_a.things (code) VALUES (5)")
        with pytest.raises(asyncpg.UniqueViolationError):
            await execute(dsn, "CREATE UNIQUE INDEX CONCURRENTLY things_code_key "
                          "ON tenant_a.things (code)")
        assert await index_valid(dsn, "tenant_a", "things_code_key") is False
        await execute(dsn, "DELETE FROM tenant_a.things WHERE id > 100")
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.sqlstate, o.message) for o in report.failed]
    for t in tenants:
        assert await versions(dsn, t) == [1, 2, 3]
        assert await index_valid(dsn, t, "things_code_key") is True
    with pytest.raises(asyncpg.UniqueViolationError):
        await execute(dsn, "INSERT INTO tenant_a.things (code) VALUES (5)")


@pytest.mark.parametrize("robust", [True, False], ids=["if-not-exists", "bare"])
async def test_index_build_that_outlived_its_killed_runner(
    dsn: str, make_migrations: MakeMigrations, robust: bool
) -> None:
    """After a runner is killed mid-build, its backend finishes the index: the tenant holds a
    valid index but no history row for it. The retry (or resume) must cope, which only
    IF NOT EXISTS does; the bare form is what lint's concurrently-not-retryable warns of."""
    files = dict(INDEXED)
    if not robust:
        files["V2__index.sql"] = files["V2__index.sql"].replace(" IF NOT EXISTS", "")
    folder = make_migrations(files)
    await create_tenants(dsn, ["tenant_a"])
    warned = [f.rule for f in lint_migrations(load_migrations(folder))]
    assert warned == ([] if robust else ["concurrently-not-retryable"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(target=1)).ok
        await execute(dsn, "CREATE UNIQUE INDEX CONCURRENTLY things_code_key "
                      "ON tenant_a.things (code)")
        report = await engine.upgrade()
    if robust:
        assert report.ok
        assert await versions(dsn, "tenant_a") == [1, 2, 3]
    else:
        (failed,) = report.failed
        assert (failed.sqlstate, failed.failing_version) == ("42P07", 2)
        assert await versions(dsn, "tenant_a") == [1]
    assert await index_valid(dsn, "tenant_a", "things_code_key") is True


async def test_index_build_held_up_by_an_old_transaction_names_it_and_cleans_up(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    """CREATE INDEX CONCURRENTLY waits for every older transaction in the database. When
    it runs out of time the failure names that transaction, though it holds no lock in
    the tenant, and the INVALID index the build left does not stay behind."""
    files = dict(INDEXED)
    files["V2__index.sql"] = files["V2__index.sql"].replace("lock-timeout=5s",
                                                            "lock-timeout=300ms")
    folder = make_migrations(files)
    await create_tenants(dsn, ["tenant_a"])
    report_conn = await asyncpg.connect(dsn)
    try:
        async with Engine(dsn, migrations=folder, retries=0) as engine:
            assert (await engine.upgrade(target=1)).ok
            # A report elsewhere in the database, holding its snapshot.
            await report_conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
            await report_conn.fetchval("SELECT count(*) FROM pg_catalog.pg_class /* report */")
            report = await engine.upgrade()
    finally:
        await report_conn.close()
    (failed,) = report.failed
    assert (failed.sqlstate, failed.failing_version) == ("55P03", 2), failed.message
    assert "blocked by pid" in (failed.message or "") and "report" in (failed.message or "")
    assert await index_valid(dsn, "tenant_a", "things_code_key") is None
    assert await versions(dsn, "tenant_a") == [1]


async def test_non_transactional_failure_is_recorded(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(INDEXED)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(target=1)).ok
        await execute(dsn, "INSERT INTO tenant_b.things (code) VALUES (7)")
        report = await engine.upgrade()
        (failed,) = report.failed
        assert failed.tenant == "tenant_b"
        assert failed.sqlstate == "23505"
        assert failed.failing_version == 2
        assert await versions(dsn, "tenant_b") == [1]
        assert await versions(dsn, "tenant_a") == [1, 2, 3]
        # Fix the data: the retry drops the INVALID leftover and builds a valid index.
        await execute(dsn, "DELETE FROM tenant_b.things WHERE id > 100")
        again = await engine.upgrade()
    assert again.ok
    assert [o.tenant for o in again.succeeded] == ["tenant_b"]
    assert await index_valid(dsn, "tenant_b", "things_code_key") is True
    assert await versions(dsn, "tenant_b") == [1, 2, 3]


# --- atomic tenant ------------------------------------------------------------------------

ATOMIC = {
    "V1__base.sql": "CREATE TABLE {{schema}}.base (id int);\n",
    "V2__a.sql": "CREATE TABLE {{schema}}.a2 (id int);\n",
    "V3__b.py": """\
        async def up(ctx):
            await ctx.execute("CREATE TABLE {{schema}}.b3 (id int)")
        """,
    "V4__c.sql": """\
        CREATE TABLE {{schema}}.c4 (id int);
        SELECT 1 / (SELECT count(*) FROM {{schema}}.base)::int;
        """,
}


async def test_atomic_tenant_rolls_back_the_whole_group(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(ATOMIC)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder, atomic_tenant=True) as engine:
        assert (await engine.upgrade(target=1)).ok
        await execute(dsn, "INSERT INTO tenant_b.base VALUES (1)")
        report = await engine.upgrade()
    assert not report.ok
    (failed,) = report.failed
    assert failed.tenant == "tenant_a"
    assert failed.sqlstate == "22012"
    assert failed.version_reached == 1
    assert failed.applied == ()
    assert await versions(dsn, "tenant_a") == [1]
    assert await relations(dsn, "tenant_a") == {"base", "tenantmig_history",
                                                "tenantmig_history_pkey"}
    assert await versions(dsn, "tenant_b") == [1, 2, 3, 4]


async def test_without_atomic_tenant_keeps_earlier_versions(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(ATOMIC)
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(target=1)).ok
        report = await engine.upgrade()
    (failed,) = report.failed
    assert failed.failing_version == 4
    assert failed.version_reached == 3
    assert failed.applied == (2, 3)
    assert await versions(dsn, "tenant_a") == [1, 2, 3]


async def test_atomic_tenant_reports_the_version_that_failed(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(ATOMIC)
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder, atomic_tenant=True) as engine:
        assert (await engine.upgrade(target=1)).ok
        report = await engine.upgrade()
    (failed,) = report.failed
    assert failed.sqlstate == "22012"
    assert failed.failing_version == 4
    assert (await ledger(dsn, report.run_id))["tenant_a"]["failing_version"] == 4


# --- Python migrations --------------------------------------------------------------------


async def test_python_transactional_migration(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__settings.sql": "CREATE TABLE {{schema}}.settings (k text PRIMARY KEY, v text);\n",
        "V2__seed.py": """\
            async def up(ctx):
                assert ctx.transactional
                await ctx.execute(
                    "INSERT INTO {{schema}}.settings (k, v) VALUES ('owner', $1)", ctx.schema)
                await ctx.execute(
                    "INSERT INTO {{schema}}.settings (k, v) VALUES ('quoted', $1)", ctx.quoted)
                n = await ctx.fetchval("SELECT count(*) FROM {{schema}}.settings")
                await ctx.execute(
                    "INSERT INTO {{schema}}.settings (k, v) VALUES ('count', $1)", str(n))
            """,
    })
    tenants = ["tenant_a", "tenant_O'Brien \"x\""]
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    for t in tenants:
        rows = await fetch(dsn, f"SELECT k, v FROM {quote_ident(t)}.settings")
        assert dict(rows) == {"owner": t, "quoted": quote_ident(t), "count": "2"}
        assert await versions(dsn, t) == [1, 2]


async def test_python_failure_rolls_back_its_transaction(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        "V1__settings.sql": "CREATE TABLE {{schema}}.settings (k text PRIMARY KEY, v text);\n",
        "V2__half.py": """\
            async def up(ctx):
                await ctx.execute("INSERT INTO {{schema}}.settings VALUES ('x', 'y')")
                raise ValueError("half way")
            """,
    })
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(target=1)).ok
        report = await engine.upgrade()
    (failed,) = report.failed
    assert failed.failing_version == 2
    assert failed.message and "half way" in failed.message
    assert failed.attempts == 1
    assert await fetchval(dsn, "SELECT count(*) FROM tenant_a.settings") == 0
    assert await versions(dsn, "tenant_a") == [1]


async def test_python_backfill_commits_batches(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__items.sql": """\
            CREATE TABLE {{schema}}.items (id int PRIMARY KEY, done boolean NOT NULL DEFAULT false);
            INSERT INTO {{schema}}.items (id) SELECT g FROM generate_series(1, 2500) g;
            CREATE TABLE {{schema}}.result (updated int);
            """,
        "V2__backfill.py": """\
            transactional = False

            async def up(ctx):
                updated = await ctx.backfill("items", "done = true", where="NOT done",
                                             batch_size=1000)
                await ctx.execute("INSERT INTO {{schema}}.result VALUES ($1)", updated)
            """,
    })
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    for t in ("tenant_a", "tenant_b"):
        q = quote_ident(t)
        assert await fetchval(dsn, f"SELECT count(*) FROM {q}.items WHERE done") == 2500
        assert await fetchval(dsn, f"SELECT count(*) FROM {q}.items WHERE NOT done") == 0
        assert await fetchval(dsn, f"SELECT updated FROM {q}.result") == 2500
        # Each batch committed on its own: three transactions wrote the rows.
        assert await fetchval(dsn, f"SELECT count(DISTINCT xmin::text) FROM {q}.items") == 3
        assert await versions(dsn, t) == [1, 2]


# --- provision and application pools ---------------------------------------------------------


async def test_provision_creates_and_migrates(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_other"])
    report = await provision(dsn, "tenant_new", migrations=folder)
    assert report.ok
    assert report.command == "provision"
    assert [o.tenant for o in report.outcomes] == ["tenant_new"]
    await assert_exactly_once(dsn, "tenant_new")
    assert await relations(dsn, "tenant_other") == set()
    assert await relations(dsn, "public") == set()
    again = await provision(dsn, "tenant_new", migrations=folder)
    assert again.ok and again.nothing_to_do
    await assert_exactly_once(dsn, "tenant_new")


async def test_provision_checks_the_migrations_before_creating_the_schema(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({
        "V1__t.sql": "CREATE TABLE {{schema}}.t (id int, email extensions.citext);\n",
    })
    await execute(dsn, "CREATE SCHEMA extensions; CREATE DOMAIN extensions.citext AS text")
    with pytest.raises(tenantmig.LintError, match="other-tenant-schema"):
        await provision(dsn, "tenant_new", migrations=folder)
    assert "tenant_new" not in await schemas(dsn)
    report = await provision(dsn, "tenant_new", migrations=folder,
                             shared_schemas=["extensions"])
    assert report.ok
    assert await versions(dsn, "tenant_new") == [1]


async def test_provision_concurrent_with_upgrade(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    existing = names(50)
    new = names(10, prefix="tenant_new_")
    await create_tenants(dsn, existing)
    await create_control_schema(dsn, folder)
    async with Engine(dsn, migrations=folder, concurrency=8) as engine:
        results = await asyncio.gather(
            engine.upgrade(),
            *(provision(dsn, n, migrations=folder) for n in new),
        )
    up, *provisioned = results
    assert up.ok, [(o.tenant, o.message) for o in up.failed]
    assert all(r.ok for r in provisioned), [
        (o.tenant, o.message) for r in provisioned for o in r.failed]
    for t in [*existing, *new]:
        await assert_exactly_once(dsn, t)
    assert await relations(dsn, "public") == set()


async def test_engine_with_application_pool(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({**ONCE_ONLY, **{
        "V5__index.sql": """\
            -- tenantmig:no-transaction
            CREATE INDEX CONCURRENTLY t1_id_idx ON {{schema}}.t1 (id);
            """,
    }})
    await create_tenants(dsn, names(5))
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=4)
    try:
        async with Engine(pool=pool, migrations=folder, concurrency=3) as engine:
            report = await engine.upgrade()
        assert report.ok, [(o.tenant, o.message) for o in report.failed]
        prov = await provision(pool, "tenant_fresh", migrations=folder)
        assert prov.ok
        # The application's pool is still open, usable, and carries no session leftovers.
        assert not pool._closed
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
            assert await conn.fetchval("SHOW search_path") == '"$user", public'
            assert await conn.fetchval("SHOW lock_timeout") == "0"
            assert await conn.fetchval("SHOW statement_timeout") == "0"
        held = await fetchval(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'")
        assert held == 0
    finally:
        await pool.close()
    for t in [*names(5), "tenant_fresh"]:
        assert await versions(dsn, t) == [1, 2, 3, 4, 5]


async def test_engine_with_dsn_closes_its_pool(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, names(3))
    async with Engine(dsn, migrations=folder, concurrency=3) as engine:
        assert (await engine.upgrade()).ok
    # No connection of the engine's own pool is left open.
    left = await fetchval(
        dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenantmig' "
        "AND datname = current_database()")
    assert left == 0


async def test_closing_without_waiting_ends_the_engines_connections_and_no_others(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    """close(wait=False), as the command line does before exiting: the engine's own
    connections end (the server ends each on its own time), an application's pool given
    to another engine stays open and usable."""
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, names(3))
    app_pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    try:
        engine = Engine(dsn, migrations=folder, concurrency=3)
        borrowing = Engine(pool=app_pool, migrations=folder, concurrency=2)
        assert (await engine.upgrade()).ok
        assert (await borrowing.status()).tenants
        await engine.close(wait=False)
        await borrowing.close(wait=False)
        left = -1
        for _ in range(200):  # the backends exit after reading the goodbye
            left = await fetchval(
                dsn, "SELECT count(*) FROM pg_stat_activity WHERE application_name = "
                "'tenantmig' AND datname = current_database()")
            if left == 0:
                break
            await asyncio.sleep(0.05)
        assert left == 0
        async with app_pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1
    finally:
        await app_pool.close()


# --- downgrade ---------------------------------------------------------------------------

REVERSIBLE = {
    "V1__base.sql": "CREATE TABLE {{schema}}.base (id int, c int);\n",
    "V2__column.sql": "ALTER TABLE {{schema}}.base ADD COLUMN extra int;\n",
    "U2__column.sql": "-- tenantmig:allow drop-column test: the undo drops V2's column\n"
                      "ALTER TABLE {{schema}}.base DROP COLUMN extra;\n",
    # The view depends on V2's column: U2 only works after U3 (no CASCADE).
    "V3__view.sql": "CREATE VIEW {{schema}}.base_view AS SELECT id, extra FROM {{schema}}.base;\n",
    "U3__view.sql": "DROP VIEW {{schema}}.base_view;\n",
    "V4__python.py": """\
        async def up(ctx):
            await ctx.execute("CREATE TABLE {{schema}}.py4 (id int)")

        async def down(ctx):
            await ctx.execute("DROP TABLE {{schema}}.py4")
        """,
}


async def test_downgrade_applies_undos_in_reverse(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(REVERSIBLE)
    tenants = ["tenant_a", "tenant_b"]
    await create_tenants(dsn, [*tenants, "tenant_other"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(tenants=tenants)).ok
        report = await engine.downgrade(target=1, tenants=tenants)
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    assert report.command == "down"
    for o in report.outcomes:
        assert o.applied == (4, 3, 2)
        assert o.version_before == 4 and o.version_reached == 1
    for t in tenants:
        assert await versions(dsn, t) == [1]
        assert await relations(dsn, t) == {"base", "tenantmig_history", "tenantmig_history_pkey"}
        cols = await fetch(dsn, "SELECT attname FROM pg_attribute WHERE attrelid = $1::regclass "
                           "AND attnum > 0 AND NOT attisdropped ORDER BY attnum",
                           f"{quote_ident(t)}.base")
        assert [r["attname"] for r in cols] == ["id", "c"]
    assert await relations(dsn, "tenant_other") == set()
    last = (await runs(dsn))[-1]
    assert last["command"] == "down" and last["target"] == 1 and last["status"] == "succeeded"


async def test_resumed_downgrade_goes_down_and_names_the_run_it_resumes(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(REVERSIBLE)
    tenants = ["tenant_a", "tenant_b"]
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade()).ok
        # A view of the tenant's own stops U2 from dropping the column it reads.
        await execute(dsn, "CREATE VIEW tenant_b.hand AS SELECT extra FROM tenant_b.base")
        failed = await engine.downgrade(target=1)
        assert [o.tenant for o in failed.failed] == ["tenant_b"]
        await execute(dsn, "DROP VIEW tenant_b.hand")
        resumed = await engine.resume()
    assert resumed.ok, [(o.tenant, o.message) for o in resumed.failed]
    assert await versions(dsn, "tenant_b") == [1]
    last = (await runs(dsn))[-1]
    assert (last["command"], last["target"], last["resumed_from"]) == \
        ("down", 1, failed.run_id)


async def test_tenants_refused_by_down_count_towards_max_failures(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    files = {k: v for k, v in REVERSIBLE.items() if k != "U3__view.sql"}
    folder = make_migrations(files)
    await create_tenants(dsn, ["tenant_a", "tenant_b", "tenant_c"])
    async with Engine(dsn, migrations=folder, max_failures=0) as engine:
        assert (await engine.upgrade(tenants=["tenant_a"])).ok
        assert (await engine.upgrade(tenants=["tenant_b", "tenant_c"], target=2)).ok
        report = await engine.downgrade(target=1)
    counts = report.counts()
    assert (counts["failed"], counts["pending"], counts["succeeded"]) == (1, 2, 0), counts
    for t in ("tenant_b", "tenant_c"):
        assert await versions(dsn, t) == [1, 2]


async def test_downgrade_without_undo_stops_only_the_tenants_that_need_it(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    files = {k: v for k, v in REVERSIBLE.items() if k != "U3__view.sql"}
    folder = make_migrations(files)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(tenants=["tenant_a"])).ok
        assert (await engine.upgrade(tenants=["tenant_b"], target=2)).ok
        before = await history(dsn, "tenant_a")
        report = await engine.downgrade(target=1)
        with pytest.raises(TargetError):
            await engine.downgrade(target=9)
    # tenant_a (at 4) needs U3, which does not exist: left exactly as it was, failed.
    assert not report.ok
    outcomes = {o.tenant: o for o in report.outcomes}
    a = outcomes["tenant_a"]
    assert (a.status, a.failing_version, a.version_reached, a.applied) == ("failed", 3, 4, ())
    assert a.message is not None and "V3__view.sql" in a.message
    assert await history(dsn, "tenant_a") == before
    assert "py4" in await relations(dsn, "tenant_a")  # U4 exists but was not run either
    # tenant_b (at 2) needs only U2: it went down.
    assert outcomes["tenant_b"].status == "succeeded"
    assert await versions(dsn, "tenant_b") == [1]
    rows = await ledger(dsn, report.run_id)
    assert rows["tenant_a"]["status"] == "failed"
    assert rows["tenant_a"]["failing_version"] == 3
    assert "no undo for version 3" in rows["tenant_a"]["message"]
    assert rows["tenant_b"]["status"] == "succeeded"
    assert (await runs(dsn))[-1]["status"] == "failed"


async def test_downgrade_transactional_undo_of_non_transactional_migration(
        dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__base.sql": "CREATE TABLE {{schema}}.base (id int);\n",
        "V2__index.sql": """\
            -- tenantmig:no-transaction
            CREATE INDEX CONCURRENTLY base_id_idx ON {{schema}}.base (id);
            """,
        "U2__index.sql": """\
            -- tenantmig:allow drop-index-not-concurrent test: a transactional undo (plain DROP)
            DROP INDEX {{schema}}.base_id_idx;
            """,
    })
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade()).ok
        assert "base_id_idx" in await relations(dsn, "tenant_a")
        report = await engine.downgrade(target=1)
    assert report.ok
    assert await versions(dsn, "tenant_a") == [1]
    assert "base_id_idx" not in await relations(dsn, "tenant_a")


async def test_downgrade_non_transactional_undo_of_transactional_migration(
        dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__base.sql": "CREATE TABLE {{schema}}.base (id int);\n",
        "V2__index.sql": """\
            -- tenantmig:allow index-not-concurrent test: a transactional migration (plain CREATE)
            CREATE INDEX base_id_idx ON {{schema}}.base (id);
            """,
        "U2__index.sql": """\
            -- tenantmig:no-transaction
            DROP INDEX CONCURRENTLY IF EXISTS {{schema}}.base_id_idx;
            """,
    })
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade()).ok
        report = await engine.downgrade(target=1)
    assert report.ok, [(o.tenant, o.sqlstate, o.message) for o in report.failed]
    assert await versions(dsn, "tenant_a") == [1]
    assert "base_id_idx" not in await relations(dsn, "tenant_a")


# --- resume --------------------------------------------------------------------------------


async def test_resume_retries_exactly_the_failed_tenants(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(DATA_MIGRATIONS)
    tenants = names(8)
    bad = [tenants[2], tenants[5]]
    await create_tenants(dsn, tenants)
    first = await migrate_with_bad_data(dsn, folder, tenants, bad)
    assert sorted(o.tenant for o in first.failed) == bad
    good_history = {t: await history(dsn, t) for t in tenants if t not in bad}

    for t in bad:
        await execute(dsn, f"DELETE FROM {quote_ident(t)}.things WHERE n <= 0")
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.resume()
        assert report.ok, [(o.tenant, o.message) for o in report.failed]
        assert report.command == "resume"
        assert sorted(o.tenant for o in report.outcomes) == bad
        assert all(o.applied == (2, 3) for o in report.outcomes)
        # The latest run (the resume) has nothing left to do.
        again = await engine.resume()
        assert again.run_id is None and again.outcomes == ()
    for t in tenants:
        assert await versions(dsn, t) == [1, 2, 3], t
    for t, rows in good_history.items():
        assert await history(dsn, t) == rows, t
    for t in bad:
        rows = await history(dsn, t)
        assert rows is not None
        assert {r["run_id"] for r in rows if r["version"] > 1} == {report.run_id}
    resumed = [r for r in await runs(dsn) if r["run_id"] == report.run_id]
    assert resumed[0]["resumed_from"] == first.run_id
    assert resumed[0]["command"] == "resume"
    entries = await ledger(dsn, report.run_id)
    assert sorted(entries) == bad
    assert {r["status"] for r in entries.values()} == {"succeeded"}
    # The failed run's ledger is left as it was: history of what happened.
    old = await ledger(dsn, first.run_id)
    assert {t for t, r in old.items() if r["status"] == "failed"} == set(bad)


async def test_resume_without_runs(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(TargetError):
            await engine.resume()
        with pytest.raises(TargetError):
            await engine.resume("no-such-run")
    assert await history(dsn, "tenant_a") is None


async def test_resume_when_failed_tenants_were_dropped(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(DATA_MIGRATIONS)
    tenants = names(4)
    bad = [tenants[1]]
    await create_tenants(dsn, tenants)
    first = await migrate_with_bad_data(dsn, folder, tenants, bad)
    assert [o.tenant for o in first.failed] == bad
    await execute(dsn, f"DROP SCHEMA {quote_ident(bad[0])} CASCADE")
    await create_tenants(dsn, ["tenant_later"])
    async with Engine(dsn, migrations=folder) as engine:
        # Not "nothing to resume": the run did leave that tenant unfinished.
        with pytest.raises(TargetError, match="no longer exist.*" + bad[0]):
            await engine.resume()
    assert await history(dsn, "tenant_later") is None


async def test_empty_subset_targets_nobody(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(tenants=[])
    assert report.outcomes == ()
    assert await history(dsn, "tenant_a") is None
    assert await history(dsn, "tenant_b") is None


async def test_a_stop_ends_one_run_not_the_engine(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, names(3))
    async with Engine(dsn, migrations=folder) as engine:
        engine.request_stop()  # before any run: the next one starts no tenant
        stopped = await engine.upgrade()
        assert stopped.interrupted and len(stopped.pending) == 3
        again = await engine.upgrade()
    assert again.ok and not again.interrupted and len(again.succeeded) == 3


async def test_an_error_in_on_outcome_stops_the_run_and_is_raised_as_itself(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, names(4))

    def callback(outcome: tenantmig.TenantOutcome) -> None:
        raise ValueError(f"cannot record {outcome.tenant}")

    async with Engine(dsn, migrations=folder, concurrency=1, on_outcome=callback) as engine:
        with pytest.raises(ValueError, match="cannot record"):
            await engine.upgrade()
    (run,) = await runs(dsn)
    assert run["status"] == "interrupted"
    rows = await ledger(dsn, run["run_id"])
    assert sorted(r["status"] for r in rows.values()).count("pending") >= 3


async def test_a_tenant_is_not_made_the_control_schema(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b", "tenant_c"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(["tenant_b"])).ok
    for schema in ("tenant_b", "tenant_c"):  # migrated, and not yet
        async with Engine(dsn, migrations=folder, control_schema=schema) as engine:
            with pytest.raises(tenantmig.ConfigError, match="is a tenant schema"):
                await engine.upgrade(["tenant_a"])
    assert "runs" not in await relations(dsn, "tenant_c")
    assert "runs" not in await relations(dsn, "tenant_b")
    assert await history(dsn, "tenant_a") is None
    # a prefix that the default control schema's name starts with is fine
    async with Engine(dsn, migrations=folder, prefix="tenant") as engine:
        assert (await engine.upgrade(["tenant_a"])).ok


def test_control_schema_must_be_tenantmigs_own(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    for name in ("public", "pg_temp", "information_schema"):
        with pytest.raises(tenantmig.ConfigError, match="control_schema"):
            Engine("postgresql://127.0.0.1:1/db", migrations=folder, control_schema=name)
    with pytest.raises(tenantmig.ConfigError, match="shorter than 1ms"):
        Engine("postgresql://127.0.0.1:1/db", migrations=folder, lock_timeout=0.0004)


async def test_stop_leaves_pending_and_resume_finishes(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(ONCE_ONLY)
    tenants = names(5)
    await create_tenants(dsn, tenants)
    engine = Engine(dsn, migrations=folder, concurrency=1)
    engine.on_outcome = lambda outcome: engine.request_stop()
    try:
        report = await engine.upgrade()
    finally:
        await engine.close()
    assert report.interrupted
    assert not report.ok
    assert len(report.succeeded) == 1 and len(report.pending) == 4
    done = report.succeeded[0].tenant
    (run,) = await runs(dsn)
    assert run["status"] == "interrupted"
    rows = await ledger(dsn, report.run_id)
    assert sorted(r["status"] for r in rows.values()) == ["pending"] * 4 + ["succeeded"]
    for o in report.pending:
        assert await history(dsn, o.tenant) is None
    before = await history(dsn, done)

    async with Engine(dsn, migrations=folder) as engine2:
        resumed = await engine2.resume()
    assert resumed.ok
    assert sorted(o.tenant for o in resumed.outcomes) == sorted(o.tenant for o in report.pending)
    for t in tenants:
        await assert_exactly_once(dsn, t)
    assert await history(dsn, done) == before


async def test_on_outcome_callback(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(DATA_MIGRATIONS)
    tenants = names(4)
    await create_tenants(dsn, tenants)
    seen: list[tenantmig.TenantOutcome] = []

    async def record(outcome: tenantmig.TenantOutcome) -> None:
        seen.append(outcome)

    async with Engine(dsn, migrations=folder, on_outcome=record) as engine:
        await engine.upgrade(target=1)
        await execute(dsn, f"INSERT INTO {quote_ident(tenants[0])}.things (n) VALUES (0)")
        seen.clear()
        report = await engine.upgrade()
    assert sorted(o.tenant for o in seen) == tenants
    assert {o.tenant: o.status for o in seen} == {o.tenant: o.status for o in report.outcomes}
    assert {o.tenant for o in seen if o.status == "failed"} == {tenants[0]}


async def test_first_migration_failing_leaves_no_history_table(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        "V1__boom.sql": "CREATE TABLE {{schema}}.t (id int);\nSELECT 1 / 0;\n",
    })
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    (failed,) = report.failed
    assert failed.sqlstate == "22012"
    assert failed.version_reached is None
    assert await history(dsn, "tenant_a") is None
    assert await relations(dsn, "tenant_a") == set()


async def test_statement_timeout_directive(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
        "V2__slow.sql": """\
            -- tenantmig:statement-timeout=100ms
            INSERT INTO {{schema}}.t SELECT 1 FROM pg_sleep(0.6);
            """,
    })
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder, retries=0) as engine:
        report = await engine.upgrade()
    (failed,) = report.failed
    assert failed.sqlstate == "57014"
    assert failed.failing_version == 2
    assert await versions(dsn, "tenant_a") == [1]
    assert await fetchval(dsn, "SELECT count(*) FROM tenant_a.t") == 0


async def test_statement_timeout_does_not_leak_to_later_migrations(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        "V1__t.sql": """\
            -- tenantmig:statement-timeout=300ms
            CREATE TABLE {{schema}}.t (id int);
            """,
        "V2__idx.sql": """\
            -- tenantmig:no-transaction
            -- tenantmig:statement-timeout=300ms
            CREATE INDEX CONCURRENTLY t_idx ON {{schema}}.t (id);
            """,
        "V3__slow.sql": "INSERT INTO {{schema}}.t SELECT 1 FROM pg_sleep(0.5);\n",
    })
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder, retries=0, concurrency=1) as engine:
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.sqlstate, o.message) for o in report.failed]
    assert await versions(dsn, "tenant_a") == [1, 2, 3]


async def test_statement_timeout_is_each_migrations_own_with_atomic_tenant(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    """In one transaction for all of a tenant's migrations, a slow migration without the
    directive is not cut short by a later migration's statement timeout, and the one with
    it still is."""
    files = {
        "V1__slow.sql": "CREATE TABLE {{schema}}.t (id int);\nSELECT pg_sleep(0.5);\n",
        "V2__quick.sql": """\
            -- tenantmig:statement-timeout=200ms
            CREATE TABLE {{schema}}.quick (id int);
            """,
        "V3__slow_again.sql": "SELECT pg_sleep(0.3), count(*) FROM {{schema}}.t;\n",
    }
    folder = make_migrations(files)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder, retries=0, atomic_tenant=True) as engine:
        report = await engine.upgrade(tenants=["tenant_a"])
        assert report.ok, [(o.tenant, o.sqlstate, o.message) for o in report.failed]
        assert await versions(dsn, "tenant_a") == [1, 2, 3]
        (folder / "V2__quick.sql").write_text(
            "-- tenantmig:statement-timeout=200ms\n"
            "SELECT pg_sleep(0.5), count(*) FROM {{schema}}.t;\n")
    async with Engine(dsn, migrations=folder, retries=0, atomic_tenant=True) as engine:
        report = await engine.upgrade(tenants=["tenant_b"])
    (failed,) = report.failed
    assert (failed.sqlstate, failed.failing_version) == ("57014", 2)
    assert await versions(dsn, "tenant_b") is None


async def test_connection_lost_mid_migration_is_retried_once_applied(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        "V1__t.sql": "CREATE TABLE {{schema}}.t (id int PRIMARY KEY);\n",
        "V2__slow.sql": """\
            INSERT INTO {{schema}}.t VALUES (1);
            SELECT pg_sleep(0.5);
            """,
    })
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder, retries=3, retry_wait=(0.05, 0.2)) as engine:
        assert (await engine.upgrade(target=1)).ok
        task = asyncio.ensure_future(engine.upgrade(tenants=["tenant_a"]))
        await wait_until(dsn, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity "
                         "WHERE wait_event = 'PgSleep' AND application_name = 'tenantmig')")
        killed = await fetchval(dsn, "SELECT count(pg_terminate_backend(pid)) FROM "
                                "pg_stat_activity WHERE wait_event = 'PgSleep' "
                                "AND application_name = 'tenantmig'")
        assert killed == 1
        report = await task
    assert report.ok, [(o.tenant, o.sqlstate, o.message) for o in report.failed]
    (outcome,) = report.outcomes
    assert outcome.attempts == 2
    assert await versions(dsn, "tenant_a") == [1, 2]
    assert await fetchval(dsn, "SELECT count(*) FROM tenant_a.t") == 1


LEAKY = {
    "V1__orders.sql": """\
        CREATE TABLE {{schema}}.audit (what text NOT NULL);
        CREATE TABLE {{schema}}.orders (id int, amount int NOT NULL);
        CREATE FUNCTION {{schema}}.orders_audit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO {{schema}}.audit VALUES ('order ' || NEW.id); RETURN NEW; END $$;
        CREATE TRIGGER orders_audit AFTER INSERT ON {{schema}}.orders
            FOR EACH ROW EXECUTE FUNCTION {{schema}}.orders_audit();
        """,
    # A data fix that must not fire this tenant's audit trigger: a session-level SET.
    "V2__fix_without_audit.sql": """\
        SET session_replication_role = replica;
        INSERT INTO {{schema}}.orders VALUES (0, 0);
        """,
    "V3__seed.sql": "INSERT INTO {{schema}}.orders VALUES (1, 100), (2, 200);\n",
}


async def test_a_tenants_session_settings_do_not_reach_the_next_tenant(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(LEAKY)
    await create_tenants(dsn, ["tenant_a", "tenant_b", "tenant_c"])
    async with Engine(dsn, migrations=folder, concurrency=1) as engine:
        assert (await engine.upgrade(["tenant_a"], target=1)).ok
        assert (await engine.upgrade(["tenant_b", "tenant_c"], target=2)).ok
        # One connection: tenant_a runs V2's SET, then tenant_b and tenant_c run V3.
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    for t in ("tenant_b", "tenant_c"):
        audited = await fetchval(dsn, f"SELECT count(*) FROM {t}.audit WHERE what IN "
                                 "('order 1', 'order 2')")
        assert audited == 2, t


async def test_a_running_run_shows_signs_of_life(
    dsn: str, make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("tenantmig.ledger.HEARTBEAT_EVERY", 0.5)
    folder = make_migrations({
        "V1__slow.sql": "CREATE TABLE {{schema}}.t (id int);\nSELECT pg_sleep(1.5);\n",
    })
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        task = asyncio.ensure_future(engine.upgrade())
        await wait_until(dsn, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity "
                         "WHERE wait_event = 'PgSleep')")
        await asyncio.sleep(1.0)
        beat = await fetchval(dsn, "SELECT heartbeat_at > started_at FROM tenantmig.runs")
        run, _ = await engine.ledger()
        report = await task
    assert report.ok
    assert beat is True
    assert run.status == "running" and not run.probably_dead()
    assert run.silent_seconds is not None and run.silent_seconds < 5


_OURS = ("SELECT count(*) FROM pg_stat_activity WHERE application_name = 'tenantmig' "
         "AND datname = current_database()")


async def test_a_run_holds_no_connection_beyond_its_workers(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    """Every backend connected during a run has to process the catalog changes of all
    the others: the ledger is written on the workers' connections between tenants, so
    a run at concurrency 2 keeps two connections, and its ledger still follows it."""
    folder = make_migrations({
        "V1__slow.sql": "CREATE TABLE {{schema}}.t (id int);\nSELECT pg_sleep(0.3);\n",
    })
    tenants = names(8)
    await create_tenants(dsn, tenants)
    seen: list[int] = []
    written: list[int] = []
    async with Engine(dsn, migrations=folder, concurrency=2) as engine:
        task = asyncio.ensure_future(engine.upgrade())
        while not task.done():
            seen.append(await fetchval(dsn, _OURS))
            if await fetchval(dsn, "SELECT to_regclass('tenantmig.ledger') IS NOT NULL"):
                written.append(await fetchval(
                    dsn, "SELECT count(*) FROM tenantmig.ledger WHERE status = 'succeeded'"))
            await asyncio.sleep(0.05)
        report = await task
    assert report.ok
    assert max(seen) == 2, seen
    # Written as tenants finished, not only at the end (4 rounds of two, 0.3 s each).
    assert any(0 < n < len(tenants) for n in written), written


async def test_a_finished_tenant_is_in_the_ledger_while_the_others_take_long(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    """When no worker finishes a tenant for a while, the ledger takes a connection of
    its own to write what is due, and the pool closes it again once it is idle."""
    quick = ("tenant_a", "tenant_b")
    folder = make_migrations({
        "V1__slow.sql": "CREATE TABLE {{schema}}.t (id int);\n"
                        "SELECT pg_sleep(CASE WHEN '{{schema}}' IN ('\"tenant_a\"', "
                        "'\"tenant_b\"') THEN 0 ELSE 3 END);\n",
    })
    tenants = [*quick, "tenant_c", "tenant_d"]
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, concurrency=2) as engine:
        task = asyncio.ensure_future(engine.upgrade(tenants=tenants))
        # tenant_a and tenant_b are done at once: the worker that finishes first writes
        # its row, the other row is due a moment later, while both workers sleep.
        await wait_until(dsn, "SELECT to_regclass('tenantmig.ledger') IS NOT NULL",
                         within=2.0)
        await wait_until(dsn, "SELECT count(*) = 2 FROM tenantmig.ledger "
                         "WHERE status = 'succeeded'", within=2.0)
        assert not task.done()
        report = await task
        await wait_until(dsn, f"SELECT ({_OURS}) = 2", within=5.0)
    assert report.ok


async def test_the_ledger_follows_a_run_on_an_application_pool_without_a_spare(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    """The workers hold every connection of the application's pool: the ledger is
    written on theirs, not after the last tenant (the first two finish at once, before
    a write is due, the others take 0.6 s each)."""
    tenants = names(8)
    folder = make_migrations({
        "V1__slow.sql": "CREATE TABLE {{schema}}.t (id int);\n"
                        "SELECT pg_sleep(CASE WHEN '{{schema}}' IN ("
                        f"'\"{tenants[0]}\"', '\"{tenants[1]}\"') THEN 0 ELSE 0.6 END);\n",
    })
    await create_tenants(dsn, tenants)
    written: list[int] = []
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    try:
        async with Engine(pool=pool, migrations=folder, concurrency=2) as engine:
            task = asyncio.ensure_future(engine.upgrade())
            while not task.done():
                if await fetchval(dsn, "SELECT to_regclass('tenantmig.ledger') IS NOT NULL"):
                    written.append(await fetchval(
                        dsn, "SELECT count(*) FROM tenantmig.ledger "
                        "WHERE status = 'succeeded'"))
                await asyncio.sleep(0.05)
            report = await task
    finally:
        await pool.close()
    assert report.ok
    assert any(0 < n < len(tenants) for n in written), written


async def test_a_run_whose_workers_cannot_write_still_shows_signs_of_life(
    dsn: str, make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A migration leaves its session read-only (in a DO block, where tenantmig cannot
    see it, so the session is not reset after the tenant): the heartbeats and ledger
    writes on that worker's connection fail, so the ledger's own connection records
    them, while tenants keep finishing there."""
    monkeypatch.setattr("tenantmig.ledger.HEARTBEAT_EVERY", 0.5)
    first = "tenant_a"
    folder = make_migrations({
        "V1__base.sql": "CREATE TABLE {{schema}}.t1 (id int);\n",
        "V2__read_only.sql": f"""\
            DO $$ BEGIN
                IF '{{{{schema}}}}' = '"{first}"' THEN
                    PERFORM pg_catalog.set_config('default_transaction_read_only', 'on',
                                                  false);
                END IF;
            END $$;
            SELECT pg_sleep(0.3) WHERE '{{{{schema}}}}' <> '"{first}"';
            CREATE TABLE {{{{schema}}}}.t2 (id int);
            """,
    })
    tenants = [first, *names(8)]
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, concurrency=1, retries=0) as engine:
        assert (await engine.upgrade(tenants=tenants, target=1)).ok
        task = asyncio.ensure_future(engine.upgrade(tenants=tenants))
        # The others fail after 0.3 s each (read-only), one after the other.
        await wait_until(dsn, "SELECT EXISTS (SELECT 1 FROM tenantmig.ledger "
                         "WHERE status = 'failed')", within=3.0)
        await asyncio.sleep(1.0)
        beat = await fetchval(dsn, "SELECT heartbeat_at > started_at + interval '0.6 s' "
                              "FROM tenantmig.runs WHERE finished_at IS NULL")
        assert not task.done()
        report = await task
    assert beat is True
    outcomes = {o.tenant: o.status for o in report.outcomes}
    assert outcomes[first] == "succeeded"
    assert all(outcomes[t] == "failed" for t in tenants[1:]), outcomes


async def test_a_role_set_in_one_tenant_does_not_reach_the_next(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    role = "tm_role_" + os.urandom(3).hex()
    folder = make_migrations({
        "V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
        "V2__as_role.py": f"""\
            async def up(ctx):
                if ctx.schema == "tenant_a":
                    await ctx.execute("SET ROLE {role}")
            """,
        "V3__t3.sql": "CREATE TABLE {{schema}}.t3 (id int);\n",
    })
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    await execute(dsn, f"CREATE ROLE {role} SUPERUSER NOLOGIN")
    try:
        async with Engine(dsn, migrations=folder, concurrency=1) as engine:
            report = await engine.upgrade()
        assert report.ok, [(o.tenant, o.message) for o in report.failed]
        owner = await fetchval(dsn, "SELECT tableowner FROM pg_tables "
                               "WHERE schemaname = 'tenant_b' AND tablename = 't3'")
        assert owner == await fetchval(dsn, "SELECT current_user")
    finally:
        await execute(dsn, f"REASSIGN OWNED BY {role} TO CURRENT_USER")
        await execute(dsn, f"DROP OWNED BY {role}")
        await execute(dsn, f"DROP ROLE {role}")


@pytest.mark.parametrize("first_fails", [False, True], ids=["succeeds", "fails-later"])
async def test_a_migration_changing_client_encoding_does_not_fail_the_next_tenant(
    dsn: str, make_migrations: MakeMigrations, first_fails: bool
) -> None:
    """set_config('client_encoding', ..., false) in one tenant's migration (in a DO
    block, where tenantmig cannot see it) changes how the connection's next queries are
    encoded (the driver follows the server): the next tenant on that connection, whose
    name LATIN1 cannot spell, must still migrate."""
    folder = make_migrations({
        "V1__latin1.sql": """\
            CREATE TABLE {{schema}}.t1 (id int);
            DO $$ BEGIN
                PERFORM pg_catalog.set_config('client_encoding', 'LATIN1', false);
            END $$;
            """,
        "V2__more.sql": "CREATE TABLE {{schema}}.t2 (id int);\n",
    })
    first, second = "tenant_a", "tenant_b_日本"
    await create_tenants(dsn, [first, second])
    if first_fails:  # V1 commits, then V2 fails: the batch stops half-way
        await execute(dsn, f"CREATE TABLE {quote_ident(first)}.t2 (id int)")
    async with Engine(dsn, migrations=folder, concurrency=1, retries=0) as engine:
        report = await engine.upgrade(tenants=[first, second])
    outcomes = {o.tenant: o for o in report.outcomes}
    assert outcomes[first].status == ("failed" if first_fails else "succeeded")
    assert outcomes[second].status == "succeeded", outcomes[second].message
    assert await versions(dsn, second) == [1, 2]


@pytest.mark.parametrize("call", [
    "set_config('app.mark', 'left by tenant_a', false)",
    "pg_catalog.set_config('app.mark', 'left by tenant_a', 1 > 2)",
])
async def test_a_setting_a_migration_makes_for_the_session_does_not_reach_the_next_tenant(
    dsn: str, make_migrations: MakeMigrations, call: str
) -> None:
    """set_config(..., false) written in a migration is a SET by another name: like one,
    it lasts only the tenant's migrations, whatever the next tenant on the connection."""
    first = "tenant_a"
    folder = make_migrations({
        "V1__settings.sql": f"SELECT {call} WHERE '{{{{schema}}}}' = '\"{first}\"';\n",
        "V2__seen.sql": "CREATE TABLE {{schema}}.seen AS "
                        "SELECT current_setting('app.mark', true) AS mark;\n",
    })
    tenants = [first, "tenant_b", "tenant_c"]
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, concurrency=1) as engine:
        report = await engine.upgrade(tenants=tenants)
    assert report.ok, [(o.tenant, o.message) for o in report.outcomes]
    seen = {t: await fetchval(dsn, f"SELECT mark FROM {quote_ident(t)}.seen") for t in tenants}
    assert seen == {first: "left by tenant_a", "tenant_b": "", "tenant_c": ""}, seen
