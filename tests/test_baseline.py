"""baseline: tenants that already hold the schema are adopted, not migrated again."""

from __future__ import annotations

import json

import pytest
from helpers import MakeMigrations, create_tenants, execute, fetch, fetchval, tm

import tenantmig
from tenantmig import BaselineError

FILES = {
    "V1__customers.sql": "CREATE TABLE {{schema}}.customers (id int PRIMARY KEY, name text);\n",
    "V2__invoices.sql": "CREATE TABLE {{schema}}.invoices (id int PRIMARY KEY);\n",
    "V3__customers_email.sql": "ALTER TABLE {{schema}}.customers ADD COLUMN email text;\n",
}

# What the team's old tool created in each tenant: V1 and V2, by hand.
OLD_SCHEMA = """
CREATE TABLE {s}.customers (id int PRIMARY KEY, name text);
CREATE TABLE {s}.invoices (id int PRIMARY KEY);
INSERT INTO {s}.customers VALUES (1, 'kept');
"""




async def old_tenants(dsn: str, names: list[str]) -> None:
    await create_tenants(dsn, names)
    for name in names:
        await execute(dsn, OLD_SCHEMA.format(s=f'"{name}"'))


async def history(dsn: str, tenant: str) -> list[tuple[int, str, int, str]]:
    rows = await fetch(dsn, f'SELECT version, checksum, duration_ms, run_id '
                            f'FROM "{tenant}".tenantmig_history ORDER BY version')
    return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_baseline_adopts_without_running_and_up_applies_only_newer(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(FILES)
    tenants = ["tenant_a", "tenant_b", "tenant_O'Brien"]
    await old_tenants(dsn, tenants)
    r = tm("baseline", "--version", "2", "--dsn", dsn, "--migrations", folder,
           cwd=folder.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    checksums = {m.version: m.checksum for m in tenantmig.load_migrations(folder).migrations}
    run = await fetch(dsn, "SELECT run_id, command, target, status FROM tenantmig.runs")
    assert [(x["command"], x["target"], x["status"]) for x in run] == [
        ("baseline", 2, "succeeded")]
    run_id = run[0]["run_id"]
    for tenant in tenants:
        assert await history(dsn, tenant) == [(1, checksums[1], 0, run_id),
                                              (2, checksums[2], 0, run_id)]
    ledger = await fetch(dsn, "SELECT tenant, status, version_reached FROM tenantmig.ledger")
    assert sorted(tuple(x) for x in ledger) == sorted((t, "succeeded", 2) for t in tenants)

    status = tm("status", "--json", "--dsn", dsn, "--migrations", folder, cwd=folder.parent)
    assert json.loads(status.stdout)["baselined"] == {t: 2 for t in tenants}
    text = tm("status", "--dsn", dsn, "--migrations", folder, cwd=folder.parent)
    assert "3 tenant(s) adopted by baseline at version 2" in text.stdout

    up = tm("up", "--json", "--dsn", dsn, "--migrations", folder, cwd=folder.parent)
    assert up.returncode == 0, up.stdout + up.stderr
    assert json.loads(up.stdout)["counts"]["succeeded"] == 3
    for tenant in tenants:
        assert await fetchval(dsn, f'SELECT name FROM "{tenant}".customers') == "kept"
        assert [v for v, *_ in await history(dsn, tenant)] == [1, 2, 3]


async def test_a_tenant_provisioned_after_a_baseline_gets_every_migration(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(FILES)
    await old_tenants(dsn, ["tenant_a"])
    async with tenantmig.Engine(dsn, migrations=folder) as engine:
        report = await engine.baseline(2)
        assert report.ok and [o.applied for o in report.outcomes] == [(1, 2)]
    await tenantmig.provision(dsn, "tenant_new", migrations=folder)
    assert [v for v, *_ in await history(dsn, "tenant_new")] == [1, 2, 3]
    assert await fetchval(dsn, "SELECT count(*) FROM tenant_new.customers") == 0


async def test_baseline_again_is_nothing_to_do(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(FILES)
    await old_tenants(dsn, ["tenant_a", "tenant_b"])
    async with tenantmig.Engine(dsn, migrations=folder) as engine:
        await engine.baseline(2, ["tenant_a"])
        report = await engine.baseline(2)
    assert {o.tenant: (o.status, o.applied) for o in report.outcomes} == {
        "tenant_a": ("skipped", ()), "tenant_b": ("succeeded", (1, 2))}


@pytest.mark.parametrize("case", ["changed file", "beyond the baseline"])
async def test_baseline_refuses_a_history_that_says_otherwise_and_writes_nothing(
    dsn: str, make_migrations: MakeMigrations, case: str
) -> None:
    folder = make_migrations(FILES)
    await old_tenants(dsn, ["tenant_a", "tenant_b"])
    await create_tenants(dsn, ["tenant_c"])
    async with tenantmig.Engine(dsn, migrations=folder) as engine:
        await engine.upgrade(["tenant_c"], target=1 if case == "changed file" else 3)
    if case == "changed file":
        await execute(dsn, "UPDATE tenant_c.tenantmig_history SET checksum = 'other'")
    runs_before = await fetchval(dsn, "SELECT count(*) FROM tenantmig.runs")
    r = tm("baseline", "--version", "2", "--dsn", dsn, "--migrations", folder,
           cwd=folder.parent)
    assert r.returncode == 2, r.stdout + r.stderr
    expected = ("V1 was applied from a different file" if case == "changed file"
                else "V3 is already applied and comes after the baseline")
    assert f"tenant_c: {expected}" in r.stderr
    assert "nothing was written" in r.stderr
    assert await fetchval(dsn, "SELECT count(*) FROM tenantmig.runs") == runs_before
    for tenant in ("tenant_a", "tenant_b"):
        assert await fetchval(dsn, "SELECT to_regclass($1)",
                              f"{tenant}.tenantmig_history") is None
    async with tenantmig.Engine(dsn, migrations=folder) as engine:
        with pytest.raises(BaselineError) as raised:
            await engine.baseline(2)
    assert list(raised.value.problems) == ["tenant_c"]


async def test_baseline_to_an_unknown_version_is_refused(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(FILES)
    await old_tenants(dsn, ["tenant_a"])
    r = tm("baseline", "--version", "9", "--dsn", dsn, "--migrations", folder,
           cwd=folder.parent)
    assert r.returncode == 2 and "no migration has version 9" in r.stderr
