"""Ledger retention: old runs go, with their rows; a year of runs costs a release nothing."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import MakeMigrations, create_tenants, execute, fetch, fetchval, tm

import tenantmig

FILES = {"V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n"}


async def make_runs(dsn: str, folder: Path, count: int) -> list[str]:
    """*count* finished runs, the oldest first."""
    for i in range(count):
        (folder / f"V{i + 2}__c{i}.sql").write_text(
            f"ALTER TABLE {{{{schema}}}}.t ADD COLUMN c{i} int;\n", encoding="utf-8")
        async with tenantmig.Engine(dsn, migrations=folder) as engine:
            assert (await engine.upgrade()).ok
    rows = await fetch(dsn, "SELECT run_id FROM tenantmig.runs ORDER BY started_at")
    return [r["run_id"] for r in rows]


async def age(dsn: str, run_ids: list[str], days: int) -> None:
    await execute(dsn, "UPDATE tenantmig.runs SET started_at = now() - $2 * interval '1 day' "
                       "WHERE run_id = ANY($1::text[])", run_ids, days)


async def test_prune_deletes_old_runs_and_their_rows_only(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(FILES)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    runs = await make_runs(dsn, folder, 4)
    await age(dsn, runs[:3], 100)
    await execute(dsn, "UPDATE tenantmig.runs SET status = 'running' WHERE run_id = $1", runs[0])
    r = tm("prune", "--older-than", "90d", "--json", "--dsn", dsn, cwd=folder.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["pruned_runs"] == 2
    left = [x["run_id"] for x in await fetch(dsn, "SELECT run_id FROM tenantmig.runs "
                                                  "ORDER BY started_at")]
    assert left == [runs[0], runs[3]]  # the running one and the recent one stay
    assert await fetchval(dsn, "SELECT count(*) FROM tenantmig.ledger WHERE run_id <> ALL($1)",
                          left) == 0
    # The histories are the tenants' own: untouched.
    assert await fetchval(dsn, "SELECT count(*) FROM tenant_a.tenantmig_history") == 5


async def test_the_latest_run_and_baselines_are_kept(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(FILES)
    await create_tenants(dsn, ["tenant_a"])
    await execute(dsn, "CREATE TABLE tenant_a.t (id int)")
    async with tenantmig.Engine(dsn, migrations=folder) as engine:
        await engine.baseline(1)
    baseline_run, up_run = await make_runs(dsn, folder, 1)
    await age(dsn, [baseline_run], 500)
    await age(dsn, [up_run], 400)
    async with tenantmig.Engine(dsn, migrations=folder) as engine:
        assert await engine.prune("30d") == 0
    assert len(await fetch(dsn, "SELECT 1 FROM tenantmig.runs")) == 2


async def test_ledger_retention_prunes_after_each_run(
    dsn: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(FILES)
    await create_tenants(dsn, ["tenant_a"])
    runs = await make_runs(dsn, folder, 3)
    await age(dsn, runs, 200)
    (folder / "V9__later.sql").write_text("ALTER TABLE {{schema}}.t ADD COLUMN z int;\n",
                                          encoding="utf-8")
    (tmp_path / "tenantmig.toml").write_text('ledger_retention = "180d"\n', encoding="utf-8")
    r = tm("up", "--dsn", dsn, "--migrations", folder, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    assert await fetchval(dsn, "SELECT count(*) FROM tenantmig.runs") == 1
    bad = tm("prune", "--older-than", "soon", "--dsn", dsn, cwd=tmp_path)
    assert bad.returncode == 2 and "not a duration" in bad.stderr
