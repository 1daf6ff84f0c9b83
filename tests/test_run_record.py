"""What ``tenantmig.runs`` and ``tenantmig.ledger`` show while a run is still going."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest
from helpers import (
    MakeMigrations,
    create_tenants,
    fetchval,
    names,
    wait_for_sql,
)

from tenantmig import Engine


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
        await wait_for_sql(dsn, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity "
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
        await wait_for_sql(dsn, "SELECT to_regclass('tenantmig.ledger') IS NOT NULL",
                         within=2.0)
        await wait_for_sql(dsn, "SELECT count(*) = 2 FROM tenantmig.ledger "
                         "WHERE status = 'succeeded'", within=2.0)
        assert not task.done()
        report = await task
        await wait_for_sql(dsn, f"SELECT ({_OURS}) = 2", within=5.0)
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
        await wait_for_sql(dsn, "SELECT EXISTS (SELECT 1 FROM tenantmig.ledger "
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
