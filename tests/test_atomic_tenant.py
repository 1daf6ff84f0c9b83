"""``atomic_tenant``: a tenant's pending migrations in one transaction, or none of them."""

from __future__ import annotations

from helpers import (
    MakeMigrations,
    create_tenants,
    execute,
    ledger,
    relations,
    versions,
)

from tenantmig import Engine

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
