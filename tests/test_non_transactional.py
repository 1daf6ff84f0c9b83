"""Migrations outside a transaction: concurrent index builds and the INVALID indexes they leave."""

from __future__ import annotations

import asyncpg
import pytest
from helpers import (
    MakeMigrations,
    create_tenants,
    execute,
    index_valid,
    names,
    relations,
    versions,
)

from tenantmig import Engine, load_migrations
from tenantmig.lint import lint_migrations

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
