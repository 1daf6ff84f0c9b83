"""The server restarted mid-run, under the Python API and the command line."""

from __future__ import annotations

import asyncio
import json
import subprocess
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
    assert_failures_exhausted_retries,
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
from tenantmig._cluster import LocalCluster


async def _restart_after(cluster: LocalCluster, dsn: str, seconds: float,
                         proc: subprocess.Popen[bytes] | None = None) -> None:
    async def started() -> bool:
        return bool(await fetchval(dsn, "SELECT to_regclass('tenantmig.runs') IS NOT NULL"))

    await wait_until(started, within=20, what="the run to start", proc=proc)
    await asyncio.sleep(seconds)
    (run,) = await runs(dsn)
    assert run["status"] == "running", "the run ended before the restart: make it longer"
    await asyncio.to_thread(cluster.restart, "fast")


def is_json_object(line: str) -> bool:
    try:
        return isinstance(json.loads(line), dict)
    except ValueError:
        return False


def known_bug(text: str) -> None:
    """A backend killed while its connection sat idle must be retried, not reported.

    Pass what the user is told about failures (the summary, the ledger's messages), never
    the log: a retried attempt is logged with its error, and that is the right behaviour."""
    assert "another operation (2) is in progress" not in text, text


@pytest.mark.parametrize("via", ["api", "cli"])
async def test_server_restart_mid_run(
    private_cluster: LocalCluster, private_dsn: str, tmp_path: Path,
    make_migrations: MakeMigrations, via: str,
) -> None:
    dsn = private_dsn
    folder = make_migrations(migration_files(3, sleep=0.02))
    tenants = narrow_names(200)
    retries = 3
    await create_item_tenants(dsn, tenants)
    log_start = private_cluster.logfile.stat().st_size

    if via == "api":
        async with Engine(dsn, migrations=folder, concurrency=8, retries=retries) as engine:
            restart = asyncio.create_task(_restart_after(private_cluster, dsn, 1.0))
            try:
                report = await asyncio.wait_for(engine.upgrade(), 60)
            except Exception as exc:
                known_bug(repr(exc))
                raise
            finally:
                await asyncio.wait_for(restart, 60)
            run_id = report.run_id
            assert run_id is not None
            first = await ledger(dsn, run_id)
            if not report.ok:
                known_bug(" ".join(o.message or "" for o in report.failed))
                assert_failures_exhausted_retries(first, retries)
                assert (await asyncio.wait_for(engine.resume(run_id), 60)).ok
    else:
        runner = Runner(tmp_path, "up", "--dsn", dsn, "--concurrency", "8",
                        "--retries", retries, "--log-format", "json")
        with reaped(runner):
            await _restart_after(private_cluster, dsn, 1.0, runner.proc)
            code = await runner.wait(60)
        assert code in (0, 1), runner.output()
        known_bug(runner.stdout)
        run_id = run_id_of(runner.stdout)
        first = await ledger(dsn, run_id)
        known_bug(" ".join(r["message"] or "" for r in first.values()))
        if code == 1:
            assert_failures_exhausted_retries(first, retries)
            code, out = await run_tm(tmp_path, "resume", "--dsn", dsn, "--concurrency", "8")
            assert code == 0, out
        runner_stderr = runner.err_path.read_text(errors="replace")
    # The server really went down under the run.
    with private_cluster.logfile.open("rb") as fh:
        fh.seek(log_start)
        log = fh.read().decode(errors="replace")
    assert "received fast shutdown request" in log, log[-3000:]

    all_runs = await runs(dsn)
    assert all_runs[0]["run_id"] == run_id
    assert set(first) == set(tenants)
    statuses = by_status(first)
    states = await tenant_states(dsn, tenants)
    assert_all_at_head(states, 3)
    for t in statuses.get("succeeded", set()):
        assert {rid for _, rid in states[t].history} == {run_id}, t
    if len(all_runs) == 1:  # completed through retries
        assert all_runs[0]["status"] == "succeeded"
        assert statuses == {"succeeded": set(tenants)}
    else:
        (resumed,) = all_runs[1:]
        assert resumed["resumed_from"] == run_id and resumed["status"] == "succeeded"
        assert set(await ledger(dsn, resumed["run_id"])) == set(tenants) - statuses.get(
            "succeeded", set())
    await wait_no_backends(dsn)
    if via == "cli":  # stderr stayed JSON throughout
        not_json = [line for line in runner_stderr.splitlines()
                    if line.strip() and not is_json_object(line)]
        assert not not_json, "\n".join(not_json[:20])
