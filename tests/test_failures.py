"""A tenant that fails: what it leaves behind, what the others do, ``max_failures``."""

from __future__ import annotations

import pytest
from helpers import (
    DATA_MIGRATIONS,
    MakeMigrations,
    create_tenants,
    fetchval,
    history,
    ledger,
    migrate_with_bad_data,
    names,
    relations,
    runs,
    schemas,
    versions,
)

import tenantmig
from tenantmig import Engine


async def count_relations_named(dsn: str, name: str) -> int:
    return int(await fetchval(dsn, "SELECT count(*) FROM pg_class WHERE relname = $1", name))


async def test_sql_without_schema_lands_in_each_tenant_and_leaks_nothing(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    """Issue 14: a name without {{schema}} resolves through the migration's search_path,
    the tenant first; before, the empty search_path refused it (3F000)."""
    folder = make_migrations({
        "V1__ok.sql": "CREATE TABLE {{schema}}.ok1 (id int);\n",
        "V2__unqualified.sql": """\
            CREATE TABLE {{schema}}.ok2 (id int);
            CREATE TABLE leak (id int);
            """,
    })
    tenants = names(3)
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    for t in tenants:
        assert await versions(dsn, t) == [1, 2]
        assert await relations(dsn, t) == {"ok1", "ok2", "leak", "tenantmig_history",
                                           "tenantmig_history_pkey"}
    assert await count_relations_named(dsn, "leak") == 3  # one in each tenant
    assert await relations(dsn, "public") == set()
    rows = await ledger(dsn, report.run_id)
    assert {r["status"] for r in rows.values()} == {"succeeded"}


async def test_unsafe_migration_raises_lint_error_before_anything(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        "V1__things.sql": "CREATE TABLE {{schema}}.things (id int, n int);\n",
        "V2__check.sql": "ALTER TABLE {{schema}}.things ADD CONSTRAINT things_n_positive "
                         "CHECK (n > 0);\n",
    })
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(tenantmig.LintError) as caught:
            await engine.upgrade()
    assert "V2__check.sql:1 constraint-not-valid" in str(caught.value)
    for t in ("tenant_a", "tenant_b"):
        assert await relations(dsn, t) == set()
    assert await schemas(dsn) == {"tenant_a", "tenant_b"}  # no control schema
    assert await runs(dsn) == []


@pytest.mark.parametrize("transactional", [True, False])
async def test_python_without_schema_lands_in_each_tenant(
    dsn: str, make_migrations: MakeMigrations, transactional: bool
) -> None:
    folder = make_migrations({
        "V1__ok.sql": "CREATE TABLE {{schema}}.ok1 (id int);\n",
        "V2__unqualified.py": f"""\
            transactional = {transactional}

            async def up(ctx):
                await ctx.conn.execute("CREATE TABLE leak2 (id int)")
            """,
    })
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    assert await count_relations_named(dsn, "leak2") == 2
    assert await relations(dsn, "public") == set()
    for t in ("tenant_a", "tenant_b"):
        assert await versions(dsn, t) == [1, 2]
        assert "leak2" in await relations(dsn, t)


async def test_tenant_data_failure_others_go_on(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(DATA_MIGRATIONS)
    tenants = names(10)
    bad = [tenants[3], tenants[7]]
    await create_tenants(dsn, tenants)
    report = await migrate_with_bad_data(dsn, folder, tenants, bad)
    assert not report.ok
    assert report.counts() == {"succeeded": 8, "failed": 2, "pending": 0, "skipped": 0}
    assert sorted(o.tenant for o in report.failed) == bad
    for o in report.failed:
        assert o.sqlstate == "23514"
        assert o.failing_version == 2
        assert o.version_before == 1 and o.version_reached == 1
        assert o.applied == ()
        assert o.attempts == 1
        assert o.message and "things_n_positive" in o.message
    for t in tenants:
        expected = [1] if t in bad else [1, 2, 3]
        assert await versions(dsn, t) == expected, t
    rows = await ledger(dsn, report.run_id)
    assert set(rows) == set(tenants)
    for t, r in rows.items():
        if t in bad:
            assert r["status"] == "failed"
            assert r["sqlstate"] == "23514"
            assert r["failing_version"] == 2
            assert r["version_reached"] == 1
            assert "things_n_positive" in r["message"]
        else:
            assert r["status"] == "succeeded" and r["version_reached"] == 3
            assert r["sqlstate"] is None
    last = (await runs(dsn))[-1]
    assert last["run_id"] == report.run_id and last["status"] == "failed"


async def test_max_failures_leaves_rest_pending(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__ok.sql": "CREATE TABLE {{schema}}.ok1 (id int);\n",
        "V2__boom.sql": "SELECT 1 / 0 FROM {{schema}}.ok1 UNION ALL SELECT 1 / 0;\n",
    })
    tenants = names(8)
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, concurrency=1, max_failures=1) as engine:
        report = await engine.upgrade()
    assert not report.ok
    assert len(report.failed) == 2
    assert len(report.pending) == 6
    assert {o.sqlstate for o in report.failed} == {"22012"}
    rows = await ledger(dsn, report.run_id)
    assert sorted(r["status"] for r in rows.values()) == ["failed"] * 2 + ["pending"] * 6
    for o in report.pending:
        assert await history(dsn, o.tenant) is None


async def test_first_migration_failing_leaves_no_history_table(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        "V1__boom.sql": "CREATE TABLE {{schema}}.t (id int);\nSELECT 1 / 0;\n",
    })
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    (failed,) = report.failed
    assert failed.sqlstate == "22012"
    assert failed.version_reached is None
    assert await history(dsn, "tenant_a") is None
    assert await relations(dsn, "tenant_a") == set()
