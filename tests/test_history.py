"""Reading every tenant's history, which ``status``, ``plan`` and ``up`` all start with,
and the control schema of an older release."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from helpers import MakeMigrations, create_tenants, execute, fetchval

from tenantmig import Engine, TargetError
from tenantmig.discovery import existing
from tenantmig.history import read_histories
from tenantmig.report import Status

MIGRATIONS = {
    "V1__create_t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
    "V2__add_name.sql": "ALTER TABLE {{schema}}.t ADD COLUMN name text;\n",
    "V3__add_note.sql": "ALTER TABLE {{schema}}.t ADD COLUMN note text;\n",
}

# More tenants than one read (32 tables) holds, names that need quoting among them.
AT_HEAD = ["tenant_MixedCase", "tenant_O'Brien \"x\"", "tenant_" + "x" * 56] + [
    f"tenant_h{i:03d}" for i in range(40)
]
AT_ONE = [f"tenant_one{i:02d}" for i in range(30)]
NEVER = ["tenant_never"]

EXPECT = "SELECT count(*) FROM pg_proc WHERE proname = 'expect_v5'"


def where(status: Status) -> dict[str, tuple[int | None, tuple[int, ...], tuple[int, ...]]]:
    """tenant -> (version, pending, drifted)."""
    return {t.tenant: (t.current, t.pending, t.drifted) for t in status.tenants}


async def migrate_some(dsn: str, folder: Path) -> None:
    """AT_HEAD at version 3, AT_ONE at 1, NEVER untouched."""
    await create_tenants(dsn, AT_HEAD + AT_ONE + NEVER)
    async with Engine(dsn, migrations=folder, concurrency=4) as engine:
        assert (await engine.upgrade(AT_ONE, target=1)).ok
        assert (await engine.upgrade(AT_HEAD)).ok


async def status(dsn: str, folder: Path) -> Status:
    async with Engine(dsn, migrations=folder, concurrency=4) as engine:
        return await engine.status()


async def test_status_reads_every_history(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(MIGRATIONS)
    await migrate_some(dsn, folder)
    expected = (
        {t: (3, (), ()) for t in AT_HEAD}
        | {t: (1, (2, 3), ()) for t in AT_ONE}
        | {t: (None, (1, 2, 3), ()) for t in NEVER}
    )
    assert where(await status(dsn, folder)) == expected

    # An edited file is drift in every tenant that applied it.
    (folder / "V1__create_t.sql").write_text("CREATE TABLE {{schema}}.t (id bigint);\n")
    drifted = {t: (v, p, (1,) if v is not None else ()) for t, (v, p, _) in expected.items()}
    assert where(await status(dsn, folder)) == drifted


async def test_an_older_control_schema_is_read_and_then_upgraded(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(MIGRATIONS)
    await migrate_some(dsn, folder)
    # What a control schema of an older release lacks: this release's functions.
    await execute(dsn, "DROP FUNCTION tenantmig.expect_v5(bigint, bigint[], bigint[], boolean)")
    await execute(dsn, "ALTER TABLE tenantmig.backfills DROP COLUMN fingerprint")
    await execute(dsn, "ALTER TABLE tenantmig.runs DROP COLUMN heartbeat_at")

    # Its runs are still shown: the latest run is the one that brought AT_HEAD to 3.
    before = await status(dsn, folder)
    assert before.last_run is not None and before.last_run.tenants == len(AT_HEAD)

    # The next run with work to do brings the control schema up to this release.
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(NEVER)
    assert report.ok and report.applied_count == 3
    assert await fetchval(dsn, EXPECT) == 1
    assert await fetchval(dsn, "SELECT count(*) FROM pg_attribute WHERE attrelid = "
                          "'tenantmig.backfills'::regclass AND attname = 'fingerprint'") == 1
    after = await status(dsn, folder)
    assert after.last_run is not None and after.last_run.run_id == report.run_id
    assert where(after)["tenant_never"] == (3, (), ())


async def held_history_statements(conn: asyncpg.Connection) -> int:
    """How many statements naming a history table *conn*'s session holds prepared.
    Counted in a simple query:
    asyncpg closes a dropped statement when the connection prepares its next one, which a
    count through fetchval would do first."""
    await conn.execute(
        "SELECT pg_catalog.set_config('tenantmig_test.held', count(*)::text, false) "
        "FROM pg_catalog.pg_prepared_statements "
        "WHERE strpos(statement, 'tenantmig_history') > 0")
    return int(await conn.fetchval("SELECT pg_catalog.current_setting('tenantmig_test.held')"))


@pytest.mark.parametrize("own_pool", [True, False], ids=["own pool", "application pool"])
async def test_the_history_reads_do_not_stay_prepared_on_the_connections(
    dsn: str, make_migrations: MakeMigrations, own_pool: bool
) -> None:
    """A read names 32 history tables; kept prepared on a connection (asyncpg's statement
    cache), its plan would be checked by PostgreSQL at every schema change the other
    connections make while the tenants are migrated (bench/RESULTS.md)."""
    folder = make_migrations(MIGRATIONS)
    await migrate_some(dsn, folder)  # 73 tenants with a history: three reads of 32 or fewer
    app_pool = None if own_pool else await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    try:
        async with Engine(dsn if own_pool else None, pool=app_pool, migrations=folder,
                          concurrency=2) as engine:
            for _ in range(2):
                plan = await engine.plan()
                assert {t.tenant: t.current for t in plan.tenants} == (
                    {t: 3 for t in AT_HEAD} | {t: 1 for t in AT_ONE} | {t: None for t in NEVER})
            pool = await engine.pool()
            connections = [await pool.acquire() for _ in range(2)]
            try:
                held = [await held_history_statements(conn) for conn in connections]
                # The statement each count prepared closed what was left.
                left = [await held_history_statements(conn) for conn in connections]
            finally:
                for conn in connections:
                    await pool.release(conn)
        # At most the last read on each connection, until its next statement (asyncpg's
        # cache would keep every read: three per connection here).
        assert all(n <= 1 for n in held), held
        assert left == [0, 0]
    finally:
        if app_pool is not None:
            await app_pool.close()


async def test_a_run_does_not_keep_its_history_statements_prepared(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    """Migrations that do not go in one batch (here CREATE INDEX CONCURRENTLY) read and
    write each tenant's history with statements naming its table: cached, every tenant
    would leave its own on the connection (see the test above)."""
    folder = make_migrations({
        "V1__create_t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
        "V2__index.sql": "-- tenantmig:no-transaction\n"
                         "CREATE INDEX CONCURRENTLY t_id_idx ON {{schema}}.t (id);\n",
    })
    tenants = [f"tenant_c{i:02d}" for i in range(12)]
    await create_tenants(dsn, tenants)
    pool = await asyncpg.create_pool(dsn, min_size=2, max_size=2)
    try:
        async with Engine(pool=pool, migrations=folder, concurrency=2) as engine:
            report = await engine.upgrade()
        assert report.ok, [(o.tenant, o.message) for o in report.failed]
        connections = [await pool.acquire() for _ in range(2)]
        try:
            held = [await held_history_statements(conn) for conn in connections]
        finally:
            for conn in connections:
                await pool.release(conn)
        assert all(n <= 1 for n in held), held
    finally:
        await pool.close()
    for t in tenants:
        assert await fetchval(dsn, f'SELECT count(*) FROM "{t}".tenantmig_history') == 2


async def test_a_name_longer_than_postgresql_keeps_is_not_taken_for_the_tenant_it_cuts_to(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    """PostgreSQL cuts names at 63 bytes, and the catalog reads compare names as ``name``:
    a longer name must still match no tenant, neither when naming tenants nor when reading
    which tenants have a history."""
    folder = make_migrations(MIGRATIONS)
    longest = AT_HEAD[2]
    assert len(longest.encode()) == 63
    await create_tenants(dsn, [longest])
    async with Engine(dsn, migrations=folder, concurrency=2) as engine:
        assert (await engine.upgrade([longest])).ok
        with pytest.raises(TargetError, match="tenant schema not found"):
            await engine.upgrade([longest + "y"])
        pool = await engine.pool()
        both = await read_histories(pool, [longest, longest + "y"])
        longer_only = await read_histories(pool, [longest + "y"])
        async with pool.acquire() as conn:
            assert await existing(conn, [longest + "y"]) == set()
    assert {t: None if h is None else sorted(h) for t, h in both.items()} == {
        longest: [1, 2, 3], longest + "y": None}
    assert longer_only == {longest + "y": None}
