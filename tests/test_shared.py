"""Shared migrations: the shared schema's own history, applied before any tenant."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
from helpers import MakeMigrations, create_tenants, execute, fetch, fetchval, tm

import tenantmig

SHARED = {
    "V1__plans.sql": "CREATE TABLE {{schema}}.plans (id int PRIMARY KEY, name text);\n"
                     "INSERT INTO {{schema}}.plans VALUES (1, 'free');\n"
                     "CREATE SCHEMA IF NOT EXISTS extensions;\n",
}
TENANT = {
    # Needs the shared table: it would fail if a tenant went before the shared schema.
    "V1__subscriptions.sql": "CREATE TABLE {{schema}}.subscriptions "
                             "(id int PRIMARY KEY, plan_id int REFERENCES public.plans (id));\n",
}




async def shared_versions(dsn: str) -> list[int]:
    if await fetchval(dsn, "SELECT to_regclass('public.tenantmig_history')") is None:
        return []
    return [r["version"] for r in
            await fetch(dsn, "SELECT version FROM public.tenantmig_history ORDER BY 1")]


async def test_shared_migrations_run_once_before_any_tenant(
    dsn: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    shared = make_migrations(SHARED, subdir="shared")
    tenant = make_migrations(TENANT)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    args = ("--dsn", dsn, "--migrations", tenant, "--shared-migrations", shared,
            "--shared-schema", "public")
    plan = tm("plan", *args, cwd=tmp_path)
    assert "shared schema public first: V1" in plan.stdout, plan.stdout + plan.stderr
    r = tm("up", *args, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert await shared_versions(dsn) == [1]
    assert await fetchval(dsn, "SELECT count(*) FROM public.plans") == 1
    assert await fetchval(dsn, "SELECT count(*) FROM pg_namespace "
                               "WHERE nspname = 'extensions'") == 1
    for t in ("tenant_a", "tenant_b"):
        assert await fetchval(dsn, f"SELECT count(*) FROM {t}.tenantmig_history") == 1
    ledger = await fetch(dsn, "SELECT tenant, status FROM tenantmig.ledger ORDER BY tenant")
    assert [tuple(x) for x in ledger] == [("public", "succeeded"), ("tenant_a", "succeeded"),
                                          ("tenant_b", "succeeded")]
    status = json.loads(tm("status", "--json", *args, cwd=tmp_path).stdout)
    assert status["shared"] == {"schema": "public", "current": 1, "pending": [], "head": 1}
    again = tm("up", *args, cwd=tmp_path)
    assert again.returncode == 0 and "Nothing to do" in again.stdout
    assert await shared_versions(dsn) == [1]


async def test_a_failing_shared_migration_starts_no_tenant(
    dsn: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    shared = make_migrations(SHARED, subdir="shared")
    tenant = make_migrations(TENANT)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    await execute(dsn, "CREATE TABLE public.plans (id int)")  # V1 of the shared set fails
    args = ("--dsn", dsn, "--migrations", tenant, "--shared-migrations", shared)
    r = tm("up", *args, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    assert await shared_versions(dsn) == []
    for t in ("tenant_a", "tenant_b"):
        assert await fetchval(dsn, "SELECT to_regclass($1)", f"{t}.tenantmig_history") is None
    ledger = {x["tenant"]: x for x in await fetch(
        dsn, "SELECT tenant, status, sqlstate, message FROM tenantmig.ledger")}
    assert ledger["public"]["status"] == "failed"
    assert ledger["public"]["sqlstate"] == "42P07"
    assert 'relation "plans" already exists' in ledger["public"]["message"]
    assert {ledger[t]["status"] for t in ("tenant_a", "tenant_b")} == {"pending"}
    # Fixed, the run is resumed: the shared schema first, then the tenants.
    await execute(dsn, "DROP TABLE public.plans")
    resumed = tm("resume", *args, cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert await shared_versions(dsn) == [1]
    assert await fetchval(dsn, "SELECT count(*) FROM tenant_b.subscriptions") == 0


async def test_two_runners_apply_each_shared_migration_once(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    shared = make_migrations(SHARED, subdir="shared")
    tenant = make_migrations(TENANT)
    await create_tenants(dsn, [f"tenant_{i}" for i in range(6)])
    reports: list[tenantmig.Report] = []

    async def runner() -> None:
        async with tenantmig.Engine(dsn, migrations=tenant, shared_migrations=shared,
                                    concurrency=3) as engine:
            reports.append(await engine.upgrade())

    async with anyio.create_task_group() as tg:
        tg.start_soon(runner)
        tg.start_soon(runner)
    assert all(r.ok for r in reports), reports
    assert await shared_versions(dsn) == [1]
    assert await fetchval(dsn, "SELECT count(*) FROM public.plans") == 1
