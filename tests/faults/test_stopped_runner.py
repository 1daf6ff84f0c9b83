"""The runner stopped mid-run by SIGKILL, SIGINT or SIGTERM: a true ledger, and resume finishes."""

from __future__ import annotations

import asyncio
import signal
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from helpers import (
    MakeMigrations,
    fetchval,
    ledger,
    run_id_of,
    runs,
    wait_until,
)

from faults.faultkit import (
    Runner,
    assert_all_at_head,
    assert_consistent,
    by_status,
    create_item_tenants,
    migration_files,
    narrow_names,
    reaped,
    run_tm,
    tenant_states,
    wait_no_backends,
)
from tenantmig import Engine


@pytest.mark.parametrize("atomic", [False, True], ids=["per-migration", "atomic-tenant"])
async def test_sigkill_mid_run_then_resume(
    dsn: str, tmp_path: Path, make_migrations: MakeMigrations, atomic: bool,
) -> None:
    make_migrations(migration_files(3, sleep=0.02))
    tenants = narrow_names(200)
    await create_item_tenants(dsn, tenants)

    args = ["up", "--dsn", dsn, "--concurrency", "4"] + (["--atomic-tenant"] if atomic else [])
    runner = Runner(tmp_path, *args)
    with reaped(runner):
        async def some_succeeded() -> bool:
            if not await fetchval(dsn, "SELECT to_regclass('tenantmig.ledger') IS NOT NULL"):
                return False
            return bool(await fetchval(
                dsn, "SELECT count(*) FROM tenantmig.ledger WHERE status = 'succeeded'"))

        await wait_until(some_succeeded, within=20, what="a tenant to succeed",
                         proc=runner.proc)
        await asyncio.sleep(0.7)  # about a second into the run
        assert runner.proc.poll() is None, runner.output()
        killed_at = datetime.now(UTC)
        runner.proc.send_signal(signal.SIGKILL)
        assert await runner.wait(10) == -signal.SIGKILL
    await wait_no_backends(dsn)

    (run,) = await runs(dsn)
    assert run["status"] == "running" and run["finished_at"] is None
    rows = await ledger(dsn, run["run_id"])
    assert set(rows) == set(tenants)
    statuses = by_status(rows)
    assert set(statuses) == {"succeeded", "pending"}, {k: len(v) for k, v in statuses.items()}

    states = await tenant_states(dsn, tenants)
    assert_consistent(states)  # nobody half-migrated
    if atomic:
        assert all(st.versions in ([], [1, 2, 3]) for st in states.values()), states
    at_head = {t for t, st in states.items() if st.versions == [1, 2, 3]}
    assert statuses["succeeded"] <= at_head
    for t in statuses["succeeded"]:
        assert rows[t]["version_reached"] == 3
    # Finished but not flushed: only what the runner did in its last moments (the ledger is
    # flushed every 0.25 s; allow as much again for the flush itself on a busy machine).
    unflushed = at_head - statuses["succeeded"]
    for t in unflushed:
        assert max(states[t].applied_at) > killed_at - timedelta(seconds=0.75), (
            t, states[t].applied_at, killed_at)
    assert len(unflushed) <= 40, len(unflushed)
    assert len(at_head) < len(tenants)

    code, out = await run_tm(tmp_path, "resume", "--dsn", dsn, "--concurrency", "8")
    assert code == 0, out
    resumed = (await runs(dsn))[-1]
    assert resumed["resumed_from"] == run["run_id"] and resumed["status"] == "succeeded"
    again = await ledger(dsn, resumed["run_id"])
    assert set(again) == statuses["pending"]
    after = await tenant_states(dsn, tenants)
    assert_all_at_head(after, 3)
    for t in at_head:  # applied before the kill: not applied again
        assert after[t].history == states[t].history, t
    await wait_no_backends(dsn)


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)],
                         ids=["SIGINT", "SIGTERM"])
async def test_signal_mid_run_leaves_a_true_ledger(
    dsn: str, tmp_path: Path, make_migrations: MakeMigrations, signum: int, code: int,
) -> None:
    folder = make_migrations(migration_files(3, extra={2: "SELECT pg_sleep(0.1);",
                                                       3: "SELECT pg_sleep(0.1);"}))
    tenants = narrow_names(60)
    await create_item_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, concurrency=8) as engine:
        assert (await engine.upgrade(target=1)).ok  # everyone starts at version 1
    before = await tenant_states(dsn, tenants)

    runner = Runner(tmp_path, "up", "--dsn", dsn, "--concurrency", "4")
    with reaped(runner):
        async def some_succeeded() -> bool:
            return bool(await fetchval(
                dsn, "SELECT count(*) FROM tenantmig.ledger l JOIN tenantmig.runs r "
                "USING (run_id) WHERE r.target = 3 AND l.status = 'succeeded'"))

        await wait_until(some_succeeded, within=20, what="a tenant to succeed",
                         proc=runner.proc)
        runner.proc.send_signal(signum)
        assert await runner.wait(20) == code, runner.output()
    out = runner.output()
    assert "Traceback" not in out, out
    run_id = run_id_of(runner.stdout)

    run = (await runs(dsn))[-1]
    assert run["run_id"] == run_id and run["status"] == "interrupted", dict(run)
    rows = await ledger(dsn, run_id)
    assert set(rows) == set(tenants)
    statuses = by_status(rows)
    assert set(statuses) == {"succeeded", "pending"}, {k: len(v) for k, v in statuses.items()}
    states = await tenant_states(dsn, tenants)
    assert_consistent(states)
    for t in statuses["succeeded"]:
        assert states[t].versions == [1, 2, 3], t
        assert rows[t]["version_reached"] == 3
    for t in statuses["pending"]:  # never started: still at the old version
        assert states[t].history == before[t].history, t
        assert rows[t]["version_before"] == 1 and rows[t]["version_reached"] == 1

    code2, out2 = await run_tm(tmp_path, "resume", "--dsn", dsn, "--concurrency", "8")
    assert code2 == 0, out2
    resumed = (await runs(dsn))[-1]
    assert resumed["resumed_from"] == run_id
    assert set(await ledger(dsn, resumed["run_id"])) == statuses["pending"]
    after = await tenant_states(dsn, tenants)
    assert_all_at_head(after, 3)
    for t in statuses["succeeded"]:
        assert after[t].history == states[t].history, t
