"""SIGINT and SIGTERM mid-run, and a run whose runner was killed: what the user is told, and
resume.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from pathlib import Path
from typing import Any

from helpers import (
    create_tenants,
    fetch,
    history_tuples,
    latest_run,
    relations,
    run_id_of,
    show,
    spawn,
    tm,
    versions,
    wait_for_sleep,
)
from helpers import ledger as ledger_rows


async def test_sigint_mid_run_then_resume(dsn: str, tmp_path: Path,
                                          make_migrations: Any) -> None:
    make_migrations({
        "V1__create_items.sql": "CREATE TABLE {{schema}}.items (id int);\n",
        "V2__slow.sql": "SELECT pg_sleep(0.3);\nCREATE TABLE {{schema}}.marker (id int);\n",
    })
    names = [f"tenant_{i:03d}" for i in range(40)]
    await create_tenants(dsn, names)

    proc = spawn("up", "--dsn", dsn, "--concurrency", "2", cwd=tmp_path)
    try:
        started = time.monotonic()
        while True:  # under way: at least one tenant done, and about a second in
            done = await fetch(dsn, "SELECT count(*) FROM pg_class WHERE relname = 'marker'")
            if done[0][0] >= 1 and time.monotonic() - started >= 1.0:
                break
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() - started < 30
            await asyncio.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, f"{proc.returncode}\n{stdout}\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert "Interrupted" in stdout, stdout
    run_id = run_id_of(stdout)

    run = await latest_run(dsn)
    assert run["run_id"] == run_id and run["status"] == "interrupted"
    ledger = await ledger_rows(dsn, run_id)
    assert set(ledger) == set(names)
    statuses = {row["status"] for row in ledger.values()}
    assert statuses == {"succeeded", "pending"}, statuses
    for t in names:
        hist = await versions(dsn, t)
        rels = await relations(dsn, t)
        assert hist in (None, [1], [1, 2]), (t, hist)
        assert ("items" in rels) == (hist is not None and 1 in hist), (t, hist, rels)
        assert ("marker" in rels) == (hist == [1, 2]), (t, hist, rels)
        if ledger[t]["status"] == "succeeded":
            assert hist == [1, 2], t
            assert ledger[t]["version_reached"] == 2
        else:
            assert hist is None, (t, hist)  # never started
    succeeded = {t for t, row in ledger.items() if row["status"] == "succeeded"}
    assert 1 <= len(succeeded) < 40

    # `tenantmig ledger` names the tenants the run left pending (the first 20).
    r = tm("ledger", run_id, "--dsn", dsn, cwd=tmp_path)
    assert r.returncode == 0, show(r)
    pending = sorted(set(names) - succeeded)
    listed = r.stdout.split("Pending (not finished by this run): ")[1].splitlines()[0]
    assert listed.split(" and ")[0].split(", ") == pending[:20], show(r)
    if len(pending) > 20:
        assert f"and {len(pending) - 20} more" in listed, show(r)

    r = tm("resume", "--dsn", dsn, "--concurrency", "8", cwd=tmp_path)
    assert r.returncode == 0, show(r)
    assert f"{40 - len(succeeded)} resumed, 0 failed" in r.stdout, show(r)
    resume_id = run_id_of(r.stdout)
    for t in names:
        rows = await history_tuples(dsn, t)
        assert rows is not None and [v for v, _, _ in rows] == [1, 2], t
        expected = run_id if t in succeeded else resume_id
        assert {run for _, _, run in rows} == {expected}, t
    r = tm("status", "--json", "--dsn", dsn, cwd=tmp_path)
    assert json.loads(r.stdout)["by_version"] == {"2": 40}


async def test_sigterm_lets_running_tenants_finish(dsn: str, tmp_path: Path,
                                                   make_migrations: Any) -> None:
    make_migrations({
        "V1__create_items.sql": "CREATE TABLE {{schema}}.items (id int);\n",
        "V2__slow.sql": "SELECT pg_sleep(0.8);\nCREATE TABLE {{schema}}.marker (id int);\n",
    })
    names = [f"tenant_{i}" for i in range(6)]
    await create_tenants(dsn, names)
    proc = spawn("up", "--dsn", dsn, "--concurrency", "2", cwd=tmp_path)
    try:
        await wait_for_sleep(dsn, proc, 2)
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, f"{proc.returncode}\n{stdout}\n{stderr}"
    assert "Traceback" not in stderr
    assert "2 migrated, 0 failed, 4 pending" in stdout, stdout
    ledger = await ledger_rows(dsn, run_id_of(stdout))
    done = {t for t, row in ledger.items() if row["status"] == "succeeded"}
    assert len(done) == 2
    assert {row["status"] for t, row in ledger.items() if t not in done} == {"pending"}
    for t in names:
        assert await versions(dsn, t) == ([1, 2] if t in done else None), t


async def test_a_killed_run_is_reported_as_probably_dead_once_silent(
    dsn: str, tmp_path: Path, make_migrations: Any
) -> None:
    make_migrations({
        "V1__create_items.sql": "CREATE TABLE {{schema}}.items (id int);\n",
        "V2__slow.sql": "SELECT pg_sleep(1);\nCREATE TABLE {{schema}}.marker (id int);\n",
    })
    await create_tenants(dsn, [f"tenant_{i}" for i in range(4)])
    proc = spawn("up", "--dsn", dsn, "--concurrency", "2", cwd=tmp_path)
    try:
        await wait_for_sleep(dsn, proc, 2)
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    run = await latest_run(dsn)
    assert run["status"] == "running"
    # Just killed: too soon to tell from a run that is alive and busy.
    r = tm("ledger", "--dsn", dsn, cwd=tmp_path)
    assert r.returncode == 0 and "probably killed" not in r.stdout, show(r)
    # A minute and more later, with no sign of life meanwhile:
    await fetch(dsn, "UPDATE tenantmig.runs SET started_at = started_at - interval '2 min', "
                     "heartbeat_at = now() - interval '2 min'")
    for command in ("ledger", "status"):
        r = tm(command, "--dsn", dsn, cwd=tmp_path)
        assert "runner was probably killed" in r.stdout, show(r)
        assert f"tenantmig resume {run['run_id']}" in r.stdout, show(r)
    r = tm("ledger", "--json", "--dsn", dsn, cwd=tmp_path)
    assert json.loads(r.stdout)["run"]["probably_killed"] is True, show(r)
    # A run of an older release writes no heartbeat: nothing can be told of it.
    await fetch(dsn, "UPDATE tenantmig.runs SET heartbeat_at = NULL")
    r = tm("ledger", "--dsn", dsn, cwd=tmp_path)
    assert r.returncode == 0 and "probably killed" not in r.stdout, show(r)


async def test_second_sigint_cancels_running_tenants(dsn: str, tmp_path: Path,
                                                     make_migrations: Any) -> None:
    make_migrations({
        "V1__create_items.sql": "CREATE TABLE {{schema}}.items (id int);\n",
        "V2__slow.sql": "SELECT pg_sleep(2);\nCREATE TABLE {{schema}}.marker (id int);\n",
    })
    names = [f"tenant_{i}" for i in range(4)]
    await create_tenants(dsn, names)
    proc = spawn("up", "--dsn", dsn, "--concurrency", "2", cwd=tmp_path)
    try:
        await wait_for_sleep(dsn, proc, 2)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=30)
        elapsed = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, f"{proc.returncode}\n{stdout}\n{stderr}"
    assert "Traceback" not in stderr, stderr
    assert elapsed < 1.6, elapsed  # did not wait for pg_sleep(2)
    assert "tenantmig resume" in stderr, stderr  # no report, so it says how to go on
    assert "[error" not in stderr, stderr  # no asyncpg noise about the cancelled ones
    # the cancelled V2 transactions rolled back (the server may notice the gone client late)
    deadline = time.monotonic() + 10
    while (await fetch(dsn, "SELECT count(*) FROM pg_stat_activity "
                            "WHERE wait_event = 'PgSleep'"))[0][0]:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
    for t in names:
        hist = await versions(dsn, t)
        assert hist in (None, [1]), (t, hist)
        assert "marker" not in await relations(dsn, t)
    run = await latest_run(dsn)
    assert run["status"] == "interrupted"
    ledger = await ledger_rows(dsn, run["run_id"])
    assert {row["status"] for row in ledger.values()} == {"pending"}

    r = tm("resume", "--dsn", dsn, "--concurrency", "4", cwd=tmp_path)
    assert r.returncode == 0, show(r)
    for t in names:
        assert await versions(dsn, t) == [1, 2]
