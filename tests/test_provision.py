"""``provision``: creating one tenant and bringing it to head."""

from __future__ import annotations

import pytest
from helpers import (
    ONCE_ONLY,
    MakeMigrations,
    assert_exactly_once,
    create_tenants,
    execute,
    relations,
    schemas,
    versions,
)

import tenantmig
from tenantmig import provision


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
