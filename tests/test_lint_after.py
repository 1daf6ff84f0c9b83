"""--lint-after V: the history production already ran is judged, not refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import MakeMigrations, create_tenants, fetchval, tm

import tenantmig

HISTORY = {
    "V1__t.sql": "CREATE TABLE {{schema}}.t (id int, b text);\n",
    # What production ran years ago: unsafe on a busy table, long since applied.
    "V2__drop_b.sql": "ALTER TABLE {{schema}}.t DROP COLUMN b;\n",
}
NEW_UNSAFE = {"V3__index.sql": "CREATE INDEX t_id ON {{schema}}.t (id);\n"}




def test_lint_shows_history_findings_but_does_not_block(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(HISTORY)
    blocked = tm("lint", "--migrations", folder, cwd=folder.parent)
    assert blocked.returncode == 2 and "drop-column" in blocked.stdout
    passed = tm("lint", "--lint-after", "2", "--migrations", folder, cwd=folder.parent)
    assert passed.returncode == 0, passed.stdout + passed.stderr
    assert "V2__drop_b.sql:1 drop-column" in passed.stdout  # shown all the same
    assert "history: version up to --lint-after 2" in passed.stdout


def test_versions_after_lint_after_are_judged_as_ever(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({**HISTORY, **NEW_UNSAFE})
    r = tm("lint", "--lint-after", "2", "--migrations", folder, cwd=folder.parent)
    assert r.returncode == 2
    assert "V3__index.sql:1 index-not-concurrent" in r.stdout


async def test_up_runs_the_history_and_records_why(
    dsn: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    folder = make_migrations(HISTORY)
    await create_tenants(dsn, ["tenant_a"])
    (tmp_path / "tenantmig.toml").write_text("lint_after = 2\n", encoding="utf-8")
    r = tm("up", "--dsn", dsn, "--migrations", folder, cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    allowed = await fetchval(dsn, "SELECT arguments->'allowed' FROM tenantmig.runs")
    assert "drop-column" in allowed and "--lint-after 2" in allowed
    with pytest.raises(tenantmig.LintError):
        tenantmig.Engine(dsn, migrations=folder).check_safety()
    assert tenantmig.Engine(dsn, migrations=folder, lint_after=2).check_safety()


def test_history_does_not_excuse_what_cannot_run_per_tenant(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        "V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
        "V2__other.sql": "CREATE TABLE tenant_002.x (id int);\n",
        "V3__tx.sql": "BEGIN;\nCREATE TABLE {{schema}}.y (id int);\nCOMMIT;\n",
    })
    r = tm("lint", "--lint-after", "3", "--migrations", folder, cwd=folder.parent)
    assert r.returncode == 2, r.stdout + r.stderr
    blocking = [line for line in r.stdout.splitlines() if "(allowed:" not in line
                and ("other-tenant-schema" in line or "transaction-control" in line)]
    assert any("V2__other.sql:1 other-tenant-schema" in line for line in blocking), r.stdout
    assert any("V3__tx.sql:1 transaction-control" in line for line in blocking), r.stdout
