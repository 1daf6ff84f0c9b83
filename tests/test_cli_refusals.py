"""What the command line refuses before touching any tenant: drift, and unsafe migrations that
are not allowed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from helpers import (
    BASIC,
    DECOYS,
    TENANTS,
    V1,
    V2,
    assert_no_traceback,
    assert_untouched,
    fetch,
    has_constraint,
    latest_run,
    relations,
    run_id_of,
    schemas,
    show,
    tm,
    versions,
)


async def test_drift_refuses_and_touches_nothing(dsn: str, project: Path,
                                                 tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    with (project / "migrations" / V1).open("a", encoding="utf-8") as f:
        f.write("-- edited after it was applied\n")
    (project / "migrations" / "V3__more.sql").write_text(
        "CREATE TABLE {{schema}}.more (id int);\n", encoding="utf-8"
    )
    r = tm("up", "--dsn", dsn, cwd=project)
    assert r.returncode != 0, show(r)
    assert V1 in r.stderr and "tenant_a" in r.stderr, show(r)
    for t in tenants:
        assert await versions(dsn, t) == [1, 2]
        assert "more" not in await relations(dsn, t)
    runs = await fetch(dsn, "SELECT count(*) FROM tenantmig.runs")
    assert runs[0][0] == 1

    r = tm("status", "--json", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    status = json.loads(r.stdout)
    assert sorted(d["tenant"] for d in status["drifted"]) == tenants
    assert all(d["drifted"] == [1] for d in status["drifted"])

    r = tm("plan", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert "Drift" in r.stdout


async def test_drift_is_exit_2_naming_file_and_tenant(dsn: str, project: Path,
                                                      tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    with (project / "migrations" / V1).open("a", encoding="utf-8") as f:
        f.write("-- edited after it was applied\n")
    r = tm("up", "--dsn", dsn, cwd=project)
    assert r.returncode == 2, show(r)
    assert_no_traceback(r)
    assert V1 in r.stderr and "tenant_a" in r.stderr


CHECK_QTY = "ALTER TABLE {{schema}}.items ADD CONSTRAINT items_qty_positive CHECK (qty > 0);\n"


ALLOW_REASON = "test: tenants hold few rows, the scan is short"


UNSAFE_CHECK = "-- quantities must be positive\n" + CHECK_QTY


ALLOWED_CHECK = f"-- tenantmig:allow constraint-not-valid {ALLOW_REASON}\n" + CHECK_QTY


async def test_unsafe_migration_is_refused_unless_allowed(dsn: str, tmp_path: Path,
                                                          make_migrations: Any,
                                                          tenants: list[str]) -> None:
    make_migrations({V1: BASIC[V1], V2: UNSAFE_CHECK}, subdir="unsafe")
    make_migrations({V1: BASIC[V1], V2: ALLOWED_CHECK}, subdir="allowed")

    # a CHECK without NOT VALID on a table V1 created: refused, nothing touched
    r = tm("up", "--dsn", dsn, "--migrations", "unsafe", cwd=tmp_path)
    assert r.returncode == 2, show(r)
    assert_no_traceback(r)
    assert f"unsafe/{V2}:2 constraint-not-valid" in r.stderr, show(r)
    assert "nothing touched" in r.stderr, show(r)
    await assert_untouched(dsn, TENANTS + DECOYS)
    assert await schemas(dsn) == {*TENANTS, *DECOYS}  # no control schema either

    # the same statement, accepted on purpose: runs, and the reason is kept with the run
    r = tm("up", "--dsn", dsn, "--migrations", "allowed", cwd=tmp_path)
    assert r.returncode == 0, show(r)
    assert "3 migrated, 0 failed" in r.stdout, show(r)
    for t in tenants:
        assert await versions(dsn, t) == [1, 2]
        assert await has_constraint(dsn, t, "items_qty_positive")
    run = await latest_run(dsn)
    assert run["run_id"] == run_id_of(r.stdout)
    (row,) = await fetch(dsn, "SELECT arguments::text FROM tenantmig.runs WHERE run_id = $1",
                         run["run_id"])
    allowed = json.loads(row[0])["allowed"]
    assert [(a["rule"], a["line"], a["reason"]) for a in allowed] == [
        ("constraint-not-valid", 2, ALLOW_REASON)
    ], allowed
    assert allowed[0]["file"].endswith(V2)

    # `tenantmig lint` agrees, without a database
    r = tm("lint", "--migrations", "unsafe", cwd=tmp_path)
    assert r.returncode == 2, show(r)
    assert f"unsafe/{V2}:2 constraint-not-valid" in r.stdout + r.stderr, show(r)
    r = tm("lint", "--migrations", "allowed", cwd=tmp_path)
    assert r.returncode == 0, show(r)
    assert_no_traceback(r)
