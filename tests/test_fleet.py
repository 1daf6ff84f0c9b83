"""The fleet from Python: several databases with the command line's preflight checks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from helpers import MakeMigrations, create_tenants, fetch, fresh_database

from tenantmig import DriftError, TargetError
from tenantmig.fleet import Fleet

FILES = {
    "V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
    "V2__u.sql": "CREATE TABLE {{schema}}.u (id int);\n",
}


@pytest.fixture
async def second_db(pg_server_dsn: str, dsn: str) -> AsyncIterator[str]:
    async with fresh_database(pg_server_dsn, dsn.rsplit("/", 1)[1] + "_b") as database:
        yield database


async def versions(dsn: str, tenant: str) -> list[int]:
    rows = await fetch(dsn, f'SELECT version FROM "{tenant}".tenantmig_history ORDER BY 1')
    return [r["version"] for r in rows]


async def test_named_tenants_are_shared_out_between_databases(
    dsn: str, second_db: str, make_migrations: MakeMigrations
) -> None:
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    await create_tenants(second_db, ["tenant_x"])
    fleet = Fleet([dsn, second_db, dsn], migrations=str(make_migrations(FILES)))
    try:
        assert fleet.dsns == (dsn, second_db)
        reports = await fleet.upgrade(["tenant_a", "tenant_x"])
    finally:
        await fleet.close()
    assert [[o.tenant for o in r.outcomes] for r in reports] == [["tenant_a"], ["tenant_x"]]
    assert await versions(dsn, "tenant_a") == [1, 2]
    assert await versions(second_db, "tenant_x") == [1, 2]
    assert await fetch(dsn, "SELECT 1 FROM pg_namespace n JOIN pg_class c "
                            "ON c.relnamespace = n.oid WHERE n.nspname = 'tenant_b'") == []


async def test_a_tenant_in_no_database_is_refused_before_any_is_touched(
    dsn: str, second_db: str, make_migrations: MakeMigrations
) -> None:
    await create_tenants(dsn, ["tenant_a"])
    await create_tenants(second_db, ["tenant_x"])
    fleet = Fleet([dsn, second_db], migrations=str(make_migrations(FILES)))
    try:
        with pytest.raises(TargetError, match="not found in any database: 'tenant_nope'"):
            await fleet.upgrade(["tenant_a", "tenant_nope"])
    finally:
        await fleet.close()
    assert await fetch(dsn, "SELECT 1 FROM pg_namespace WHERE nspname = 'tenantmig'") == []


async def test_drift_in_one_database_refuses_the_whole_fleet(
    dsn: str, second_db: str, make_migrations: MakeMigrations
) -> None:
    await create_tenants(dsn, ["tenant_a"])
    await create_tenants(second_db, ["tenant_x"])
    first = make_migrations({"V1__t.sql": FILES["V1__t.sql"]}, subdir="one")
    fleet = Fleet([second_db], migrations=str(first))
    try:
        await fleet.upgrade()
    finally:
        await fleet.close()
    changed = make_migrations({"V1__t.sql": "CREATE TABLE {{schema}}.t (id bigint);\n",
                               "V2__u.sql": FILES["V2__u.sql"]}, subdir="two")
    fleet = Fleet([dsn, second_db], migrations=str(changed))
    try:
        with pytest.raises(DriftError, match=r"V1__t\.sql changed"):
            await fleet.upgrade()
    finally:
        await fleet.close()
    # The first database, whose tenants had no drift, was not touched either.
    assert await fetch(dsn, "SELECT 1 FROM pg_namespace WHERE nspname = 'tenantmig'") == []
