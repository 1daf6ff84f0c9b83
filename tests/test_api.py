"""The ``Engine`` as an application embeds it: its pools, closing, callbacks and stopping a run."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from helpers import (
    DATA_MIGRATIONS,
    ONCE_ONLY,
    MakeMigrations,
    create_tenants,
    execute,
    fetchval,
    ledger,
    names,
    quote_ident,
    runs,
    versions,
)

import tenantmig
from tenantmig import Engine, provision


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
