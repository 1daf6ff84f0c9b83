"""``down``: undo files applied in reverse, and the tenants that cannot go down."""

from __future__ import annotations

import pytest
from helpers import (
    MakeMigrations,
    create_tenants,
    execute,
    fetch,
    history,
    ledger,
    quote_ident,
    relations,
    runs,
    versions,
)

from tenantmig import Engine, TargetError

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
