"""resume without --migrations applies the files of the run it resumes."""

from __future__ import annotations

import shutil
from pathlib import Path

from helpers import MakeMigrations, create_tenants, execute, fetchval, tm

FILES = {
    "V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
    "V2__u.sql": "CREATE TABLE {{schema}}.u (id int);\n",
}




async def test_resume_from_elsewhere_uses_the_runs_folder(
    dsn: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(FILES, subdir="project/db/migrations")
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    assert tm("up", "--target", "1", "--dsn", dsn, "--migrations", folder,
              cwd=tmp_path).returncode == 0
    await execute(dsn, "CREATE TABLE tenant_b.u (id int)")  # V2 fails there
    r = tm("up", "--dsn", dsn, "--migrations", folder, cwd=tmp_path)
    assert r.returncode == 1, r.stdout + r.stderr
    await execute(dsn, "DROP TABLE tenant_b.u")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    r = tm("resume", "--dsn", dsn, cwd=elsewhere)  # no migrations/ here
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"using the migrations folder the run used: {folder.resolve()}" in r.stderr
    assert await fetchval(dsn, "SELECT max(version) FROM tenant_b.tenantmig_history") == 2


async def test_resume_when_the_runs_folder_is_gone_needs_migrations(
    dsn: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(FILES, subdir="gone")
    await create_tenants(dsn, ["tenant_a"])
    await execute(dsn, "CREATE TABLE tenant_a.t (id int)")  # V1 fails: the table exists
    assert tm("up", "--dsn", dsn, "--migrations", folder, cwd=tmp_path).returncode == 1
    shutil.rmtree(folder)
    r = tm("resume", "--dsn", dsn, cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "using the migrations folder" not in r.stderr
