"""A failing tenant through the command line: the ledger, ``status``, ``resume``,
``--max-failures``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from helpers import (
    assert_no_traceback,
    assert_usage_error,
    create_tenants,
    execute,
    fetch,
    has_constraint,
    history_tuples,
    json_lines,
    latest_run,
    quote_ident,
    run_id_of,
    show,
    tm,
    versions,
)
from helpers import ledger as ledger_rows


async def test_failing_tenant_ledger_status_and_resume(dsn: str, project: Path,
                                                       tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, "--target", "1", cwd=project)
    assert r.returncode == 0, show(r)
    for t in tenants:
        qty = -1 if t == "tenant_b" else 5
        await fetch(dsn, f"INSERT INTO {quote_ident(t)}.items VALUES (1, $1)", qty)

    r = tm("up", "--dsn", dsn, cwd=project)
    assert r.returncode == 1, show(r)
    assert_no_traceback(r)
    assert "2 migrated, 1 failed" in r.stdout, show(r)
    failed_lines = [line for line in r.stdout.splitlines() if "tenant_b" in line]
    assert any("23514" in line for line in failed_lines), show(r)
    run_id = run_id_of(r.stdout)
    assert f"tenantmig resume {run_id}" in r.stdout
    assert await versions(dsn, "tenant_b") == [1]
    assert not await has_constraint(dsn, "tenant_b", "items_qty_positive")
    before = {t: await history_tuples(dsn, t) for t in tenants}

    elsewhere = project / "elsewhere"  # no migrations folder: the ledger needs none
    elsewhere.mkdir()
    r = tm("ledger", "--dsn", dsn, cwd=elsewhere)
    assert r.returncode == 0, show(r)
    assert run_id in r.stdout
    assert "2 succeeded, 1 failed, 0 pending" in r.stdout
    assert any("tenant_b" in line and "23514" in line for line in r.stdout.splitlines()), show(r)

    r = tm("ledger", run_id, "--json", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    data = json.loads(r.stdout)
    assert data["run"]["run_id"] == run_id
    assert data["counts"] == {"succeeded": 2, "failed": 1, "pending": 0, "skipped": 0}
    rows = {row["tenant"]: row for row in data["tenants"]}
    assert rows["tenant_b"]["status"] == "failed"
    assert rows["tenant_b"]["sqlstate"] == "23514"
    assert rows["tenant_b"]["failing_version"] == 2
    assert rows["tenant_b"]["version_reached"] == 1
    assert rows["tenant_a"]["status"] == "succeeded"

    r = tm("status", "--json", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    status = json.loads(r.stdout)
    assert status["head"] == 2
    assert status["tenants"] == 3
    assert status["by_version"] == {"1": 1, "2": 2}
    assert status["behind"] == [{"tenant": "tenant_b", "current": 1, "pending": [2]}]
    assert [(f["tenant"], f["sqlstate"], f["failing_version"])
            for f in status["failed_last_run"]] == [("tenant_b", "23514", 2)]
    assert status["last_run"] == run_id

    r = tm("status", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert "1 tenant(s) behind head" in r.stdout
    assert "1 tenant(s) failed in the latest run" in r.stdout
    assert any("tenant_b" in line and "23514" in line for line in r.stdout.splitlines())

    # fix the data, resume the run
    await fetch(dsn, "UPDATE tenant_b.items SET qty = 1")
    r = tm("resume", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert_no_traceback(r)
    assert "1 resumed, 0 failed" in r.stdout, show(r)
    resume_id = run_id_of(r.stdout)
    assert resume_id != run_id
    after = {t: await history_tuples(dsn, t) for t in tenants}
    assert after["tenant_a"] == before["tenant_a"]
    assert after["tenant_c"] == before["tenant_c"]
    assert after["tenant_b"] is not None and before["tenant_b"] is not None
    new_rows = [row for row in after["tenant_b"] if row not in before["tenant_b"]]
    assert [(v, run) for v, _, run in new_rows] == [(2, resume_id)]
    assert await has_constraint(dsn, "tenant_b", "items_qty_positive")
    run = await latest_run(dsn)
    assert run["run_id"] == resume_id and run["resumed_from"] == run_id
    assert run["status"] == "succeeded"

    r = tm("status", "--json", "--dsn", dsn, cwd=project)
    status = json.loads(r.stdout)
    assert status["by_version"] == {"2": 3}
    assert status["behind"] == [] and status["failed_last_run"] == []

    # nothing left to resume
    r = tm("resume", run_id, "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert await history_tuples(dsn, "tenant_b") == after["tenant_b"]


async def test_failing_tenant_json_report(dsn: str, project: Path, tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, "--target", "1", cwd=project)
    assert r.returncode == 0, show(r)
    await fetch(dsn, "INSERT INTO tenant_c.items VALUES (1, 0)")
    r = tm("up", "--dsn", dsn, "--json", "--log-format", "json", cwd=project)
    assert r.returncode == 1, show(r)
    report = json.loads(r.stdout)
    assert report["counts"] == {"succeeded": 2, "failed": 1, "pending": 0, "skipped": 0}
    assert [(f["tenant"], f["sqlstate"]) for f in report["failed"]] == [("tenant_c", "23514")]
    events = json_lines(r.stderr)
    failed = [e for e in events if e.get("event") == "tenant failed"]
    assert len(failed) == 1, r.stderr
    assert failed[0]["tenant"] == "tenant_c"
    assert failed[0]["run_id"] == report["run_id"]
    assert failed[0]["sqlstate"] == "23514"
    assert failed[0]["version"] == 2


async def test_missing_privileges_are_an_error_not_a_traceback(
    dsn: str, project: Path
) -> None:
    """A role without the rights tenantmig's own bookkeeping needs gets exit 2 and the
    server's reason, before any tenant is touched."""
    role = "tm_lowpriv_" + os.urandom(3).hex()
    database = urlsplit(dsn).path.lstrip("/")
    parts = urlsplit(dsn)
    low = urlunsplit(parts._replace(
        netloc=f"{role}:pw@{parts.hostname}" + (f":{parts.port}" if parts.port else "")))
    await create_tenants(dsn, ["tenant_a"])
    await execute(dsn, f"CREATE ROLE {role} LOGIN PASSWORD 'pw'")
    try:
        await execute(dsn, f"REVOKE CREATE ON DATABASE {quote_ident(database)} FROM PUBLIC")
        r = tm("up", "--dsn", low, cwd=project)
        assert r.returncode == 2, show(r)
        assert "Traceback" not in r.stderr, show(r)
        assert "setting up the control schema 'tenantmig'" in r.stderr, show(r)
        assert "permission denied for database" in r.stderr, show(r)
        assert await versions(dsn, "tenant_a") is None

        # the control schema exists (made by its owner), but the role may not read it
        assert tm("up", "--dsn", dsn, "--target", "1", cwd=project).returncode == 0
        r = tm("status", "--dsn", low, cwd=project)
        assert r.returncode == 2, show(r)
        assert "Traceback" not in r.stderr, show(r)
        assert "permission denied for schema" in r.stderr, show(r)
    finally:
        await execute(dsn, f"GRANT CREATE ON DATABASE {quote_ident(database)} TO PUBLIC")
        await execute(dsn, f"DROP OWNED BY {role}")
        await execute(dsn, f"DROP ROLE {role}")


def test_ledger_without_any_run_is_a_usage_error(project: Path, pg_server_dsn: str) -> None:
    # the maintenance database has no control schema (the dsn fixture's databases are
    # separate), so there is no run to show
    r = tm("ledger", "--dsn", pg_server_dsn, "--control-schema", "tm_never_created",
           cwd=project)
    line = assert_usage_error(r)
    assert "no run" in line


async def test_max_failures_leaves_the_rest_pending(dsn: str, project: Path) -> None:
    names = ["tenant_a", "tenant_b", "tenant_c", "tenant_d"]
    await create_tenants(dsn, names)
    assert tm("up", "--dsn", dsn, "--target", "1", cwd=project).returncode == 0
    for t in ("tenant_a", "tenant_b"):
        await fetch(dsn, f"INSERT INTO {quote_ident(t)}.items VALUES (1, -5)")
    r = tm("up", "--dsn", dsn, "--concurrency", "1", "--max-failures", "0", cwd=project)
    assert r.returncode == 1, show(r)
    assert "0 migrated, 1 failed, 3 pending" in r.stdout, show(r)
    ledger = await ledger_rows(dsn, run_id_of(r.stdout))
    assert ledger["tenant_a"]["status"] == "failed"
    assert ledger["tenant_a"]["sqlstate"] == "23514"
    assert {ledger[t]["status"] for t in ("tenant_b", "tenant_c", "tenant_d")} == {"pending"}
    for t in names:
        assert await versions(dsn, t) == [1]

    r = tm("ledger", "--dsn", dsn, cwd=project)
    assert "0 succeeded, 1 failed, 3 pending" in r.stdout, show(r)
