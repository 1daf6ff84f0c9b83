"""Each version is applied to each tenant exactly once, however many runners race.

Two runners at once, runners creating the control schema at once, provisioning during an
``up``, and a connection lost after the migration committed.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import asyncpg
from helpers import (
    ONCE_ONLY,
    MakeMigrations,
    assert_exactly_once,
    create_tenants,
    execute,
    fetch,
    fetchval,
    index_valid,
    names,
    quote_ident,
    relations,
    runs,
    versions,
    wait_for_sql,
)

import tenantmig
from tenantmig import Engine, provision


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
        await wait_for_sql(dsn, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity "
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
        await wait_for_sql(dsn, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity "
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
