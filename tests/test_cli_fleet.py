"""A fleet: one command over several databases."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from helpers import (
    SECRET,
    cli_env,
    create_tenants,
    execute,
    fetch,
    fresh_database,
    json_lines,
    schemas,
    show,
    tm,
    versions,
    with_password,
)


@pytest.fixture
async def second_db(pg_server_dsn: str, dsn: str) -> Any:
    async with fresh_database(pg_server_dsn, dsn.rsplit("/", 1)[1] + "_b") as database:
        yield database


async def test_fleet_and_password_never_shown(dsn: str, second_db: str, project: Path) -> None:
    # the test cluster trusts local connections, so a password in the DSN is accepted
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    await create_tenants(second_db, ["tenant_x"])
    one, two = with_password(dsn), with_password(second_db)
    assert SECRET in one
    r = tm("up", "--dsn", one, "--dsn", two, "-vv", "--log-format", "json", cwd=project)
    assert r.returncode == 0, show(r)
    assert SECRET not in r.stdout and SECRET not in r.stderr, show(r)
    json_lines(r.stderr)
    runs = [line for line in r.stdout.splitlines() if line.startswith("Run ")]
    assert len(runs) == 2, r.stdout
    assert any("2 migrated" in line and "postgres:***@" in line for line in runs), r.stdout
    assert any("1 migrated" in line and "postgres:***@" in line for line in runs), r.stdout
    for db, tenant in ((dsn, "tenant_a"), (dsn, "tenant_b"), (second_db, "tenant_x")):
        assert await versions(db, tenant) == [1, 2]
    stored = await fetch(dsn, "SELECT arguments::text FROM tenantmig.runs")
    assert all(SECRET not in row[0] for row in stored)

    r = tm("up", "--json", cwd=project, env=cli_env(TENANTMIG_DSN=one))
    assert r.returncode == 0, show(r)
    assert SECRET not in r.stdout + r.stderr
    # one database: JSON still says which, password masked
    assert json.loads(r.stdout)["database"] == one.replace(SECRET, "***"), r.stdout
    for command in ("status", "ledger", "plan"):
        r = tm(command, "--dsn", one, "--dsn", two, cwd=project)
        assert r.returncode == 0, show(r)
        assert SECRET not in r.stdout + r.stderr, show(r)


async def test_fleet_json_is_one_document(dsn: str, second_db: str, project: Path) -> None:
    await create_tenants(dsn, ["tenant_a"])
    await create_tenants(second_db, ["tenant_x"])
    assert tm("up", "--dsn", dsn, "--dsn", second_db, cwd=project).returncode == 0
    for command in ("status", "plan", "ledger"):
        r = tm(command, "--json", "--dsn", dsn, "--dsn", second_db, cwd=project)
        assert r.returncode == 0, show(r)
        data = json.loads(r.stdout)
        assert isinstance(data, list) and len(data) == 2
        assert [d["database"] for d in data] == [dsn, second_db]
    # the same database named twice is one database
    r = tm("status", "--json", "--dsn", dsn, "--dsn", second_db, "--dsn", dsn, cwd=project)
    assert [d["database"] for d in json.loads(r.stdout)] == [dsn, second_db], show(r)


async def test_fleet_targets_a_tenant_where_it_lives(
    dsn: str, second_db: str, project: Path
) -> None:
    """Tenants are spread over a fleet: a named one is migrated in the database holding
    it, and a name that no database holds is refused before any database is touched."""
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    await create_tenants(second_db, ["tenant_x"])
    fleet = ["--dsn", dsn, "--dsn", second_db]

    r = tm("up", "--tenant", "tenant_nope", "--tenant", "tenant_x", *fleet, cwd=project)
    assert r.returncode == 2, show(r)
    assert "not found in any database: 'tenant_nope'" in r.stderr, show(r)
    for db in (dsn, second_db):
        assert "tenantmig" not in await schemas(db), "a database was touched"
    assert await versions(second_db, "tenant_x") is None

    r = tm("status", "--tenant", "tenant_x", *fleet, cwd=project)
    assert r.returncode == 0, show(r)
    r = tm("up", "--tenant", "tenant_x", *fleet, cwd=project)
    assert r.returncode == 0, show(r)
    assert await versions(second_db, "tenant_x") == [1, 2]
    assert await versions(dsn, "tenant_a") is None
    assert await versions(dsn, "tenant_b") is None

    r = tm("up", "--exclude", "tenant_a", *fleet, cwd=project)
    assert r.returncode == 0, show(r)
    assert await versions(dsn, "tenant_b") == [1, 2]
    assert await versions(dsn, "tenant_a") is None

    r = tm("up", "--exclude", "tenant_nope", *fleet, cwd=project)
    assert r.returncode == 2, show(r)
    assert "excluded tenant schema not found in any database" in r.stderr, show(r)
    assert await versions(dsn, "tenant_a") is None


_COUNT_READS = """
import sys
import tenantmig.engine as engine
from tenantmig.cli import main
reads = []
original = engine.read_histories
async def counted(pool, tenants, **kwargs):
    reads.append(len(tenants))
    return await original(pool, tenants, **kwargs)
engine.read_histories = counted
code = main(sys.argv[1:])
print("READS", reads)
sys.exit(code)
"""


def _counting_reads(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", _COUNT_READS, *args], cwd=cwd,
                          env=cli_env(), capture_output=True, text=True, timeout=120)


async def test_fleet_up_reads_each_history_once(
    dsn: str, second_db: str, project: Path
) -> None:
    """The preflight's plan (drift checked everywhere first) is the run's plan: a fleet's
    up reads every tenant's history once, not twice."""
    await create_tenants(dsn, ["tenant_a"])
    await create_tenants(second_db, ["tenant_x"])
    assert tm("up", "--target", "1", "--dsn", dsn, "--dsn", second_db,
              cwd=project).returncode == 0
    r = _counting_reads("up", "--dsn", dsn, "--dsn", second_db, cwd=project)
    assert r.returncode == 0, show(r)
    assert "READS [1, 1]" in r.stdout, show(r)
    assert await versions(dsn, "tenant_a") == [1, 2]
    assert await versions(second_db, "tenant_x") == [1, 2]


async def test_fleet_drift_in_one_database_is_refused_before_any_is_touched(
    dsn: str, second_db: str, project: Path
) -> None:
    await create_tenants(dsn, ["tenant_a"])
    await create_tenants(second_db, ["tenant_x"])
    fleet = ["--dsn", dsn, "--dsn", second_db]
    assert tm("up", "--target", "1", *fleet, cwd=project).returncode == 0
    await execute(second_db, "UPDATE tenant_x.tenantmig_history SET checksum = 'edited'")

    # Hold the drifted history for a moment, so the second database's check is slow:
    # the first must not be migrated meanwhile.
    blocker = await asyncpg.connect(second_db)
    try:
        await blocker.execute("BEGIN; LOCK TABLE tenant_x.tenantmig_history")
        running = asyncio.create_task(asyncio.to_thread(tm, "up", *fleet, cwd=project))
        await asyncio.sleep(1.5)
        await blocker.execute("ROLLBACK")
        r = await running
    finally:
        await blocker.close()
    assert r.returncode == 2, show(r)
    assert "drift" in r.stderr and "tenant_x" in r.stderr, show(r)
    assert await versions(dsn, "tenant_a") == [1]
    assert second_db.rsplit("/", 1)[1] in r.stderr, show(r)
    assert await versions(second_db, "tenant_x") == [1]
