"""``tenantmig down`` from the command line."""

from __future__ import annotations

from pathlib import Path

from helpers import (
    BASIC,
    CLOSED_DSN,
    U2,
    assert_no_traceback,
    has_constraint,
    latest_run,
    relations,
    show,
    tm,
    versions,
)


async def test_down(dsn: str, project: Path, tenants: list[str]) -> None:
    assert tm("up", "--dsn", dsn, cwd=project).returncode == 0
    r = tm("down", "--target", "1", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert_no_traceback(r)
    assert "3 downgraded, 0 failed" in r.stdout, show(r)
    for t in tenants:
        assert await versions(dsn, t) == [1]
        assert not await has_constraint(dsn, t, "items_qty_positive")
        assert "items" in await relations(dsn, t)
    run = await latest_run(dsn)
    assert run["command"] == "down" and run["target"] == 1 and run["status"] == "succeeded"

    r = tm("down", "--target", "1", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert "Nothing to do: 3 tenant(s) already at or below version 1." in r.stdout, show(r)

    r = tm("up", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    for t in tenants:
        assert await versions(dsn, t) == [1, 2]


async def test_down_without_an_undo_fails_that_tenant(dsn: str, project: Path,
                                                      tenants: list[str]) -> None:
    assert tm("up", "--dsn", dsn, cwd=project).returncode == 0
    (project / "migrations" / U2).unlink()
    r = tm("down", "--target", "1", "--dsn", dsn, "--tenant", tenants[0], cwd=project)
    assert r.returncode == 1, show(r)
    assert tenants[0] in r.stdout and "no undo for version 2" in r.stdout
    assert "Retry" not in r.stdout, show(r)  # as things stand it would be refused again
    assert "fix what their errors name, then finish with: tenantmig resume" in r.stdout
    assert_no_traceback(r)
    assert await versions(dsn, tenants[0]) == [1, 2]

    # With the undo back, the suggested resume finishes the job.
    (project / "migrations" / U2).write_text(BASIC[U2])
    run_id = r.stdout.split("tenantmig resume ")[-1].split()[0]
    r = tm("resume", run_id, "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert await versions(dsn, tenants[0]) == [1]


def test_down_requires_target(project: Path) -> None:
    r = tm("down", "--dsn", CLOSED_DSN, cwd=project)
    assert r.returncode == 2, show(r)
    assert "--target" in r.stderr
    assert_no_traceback(r)
