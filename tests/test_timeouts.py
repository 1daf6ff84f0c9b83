"""Lock timeouts (retried, or failing at once) and statement timeouts, per migration."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from helpers import (
    MakeMigrations,
    create_tenants,
    fetchval,
    ledger,
    names,
    quote_ident,
    versions,
)

from tenantmig import Engine

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
