"""``tenantmig up`` as a user runs it: help, usage errors, and which tenants it migrates.

Explicit tenants, tenants files, ``--exclude``, ``--prefix``, unknown tenants and versions.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from helpers import (
    BASIC,
    DECOYS,
    TENANTS,
    assert_no_traceback,
    assert_untouched,
    assert_usage_error,
    create_tenants,
    fetch,
    has_constraint,
    history_tuples,
    relations,
    run_id_of,
    schemas,
    show,
    tm,
    versions,
)


def test_help_and_bad_options(tmp_path: Path) -> None:
    r = tm("--help", cwd=tmp_path)
    assert r.returncode == 0, show(r)
    for command in ("up", "status", "plan", "resume", "ledger", "down", "demo"):
        assert command in r.stdout

    r = tm("up", "--help", cwd=tmp_path)
    assert r.returncode == 0, show(r)
    for option in ("--tenant", "--tenants-file", "--exclude", "--prefix", "--concurrency",
                   "--dry-run", "--target"):
        assert option in r.stdout

    r = tm("up", "--bogus", cwd=tmp_path)
    assert r.returncode == 2, show(r)
    assert "--bogus" in r.stderr
    assert_no_traceback(r)

    r = tm(cwd=tmp_path)  # no command
    assert r.returncode == 2, show(r)
    assert_no_traceback(r)

    r = tm("up", "--concurrency", "many", cwd=tmp_path)
    assert r.returncode == 2, show(r)
    assert_no_traceback(r)


def test_no_database_configured(tmp_path: Path, make_migrations: Any) -> None:
    make_migrations(BASIC)
    r = tm("up", cwd=tmp_path)
    line = assert_usage_error(r)
    assert "TENANTMIG_DSN" in line


async def test_up_migrates_all_tenants_and_only_them(dsn: str, project: Path,
                                                    tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert_no_traceback(r)
    assert re.search(r"^Run \S+: 3 migrated, 0 failed, 0 pending, 0 already at target 2; "
                     r"6 migration\(s\) applied", r.stdout, re.MULTILINE), show(r)
    run_id = run_id_of(r.stdout)
    for t in tenants:
        rows = await history_tuples(dsn, t)
        assert rows is not None and [v for v, _, _ in rows] == [1, 2]
        assert {run for _, _, run in rows} == {run_id}
        assert await has_constraint(dsn, t, "items_qty_positive")
    await assert_untouched(dsn, DECOYS)
    assert await relations(dsn, "public") == set()
    assert await schemas(dsn) == {*TENANTS, *DECOYS, "tenantmig"}

    again = tm("up", "--dsn", dsn, cwd=project)
    assert again.returncode == 0, show(again)
    assert "Nothing to do" in again.stdout
    assert "3 tenant(s)" in again.stdout
    runs = await fetch(dsn, "SELECT run_id FROM tenantmig.runs")
    assert [r["run_id"] for r in runs] == [run_id]  # no empty run recorded


async def test_up_explicit_tenants(dsn: str, project: Path, tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, "--tenant", "tenant_a", "--tenant", "tenant_c", cwd=project)
    assert r.returncode == 0, show(r)
    assert "2 migrated" in r.stdout
    assert await versions(dsn, "tenant_a") == [1, 2]
    assert await versions(dsn, "tenant_c") == [1, 2]
    assert await versions(dsn, "tenant_b") is None
    await assert_untouched(dsn, ["tenant_b", *DECOYS])


async def test_up_tenants_file(dsn: str, project: Path, tenants: list[str]) -> None:
    listing = project / "tenants.txt"
    listing.write_text(
        "# tenants to migrate first\n"
        "\n"
        "tenant_a\n"
        "   \n"
        "  tenant_c   # trailing comment\n"
        "# tenant_b\n",
        encoding="utf-8",
    )
    r = tm("up", "--dsn", dsn, "--tenants-file", listing, cwd=project)
    assert r.returncode == 0, show(r)
    assert "2 migrated" in r.stdout
    assert await versions(dsn, "tenant_a") == [1, 2]
    assert await versions(dsn, "tenant_c") == [1, 2]
    await assert_untouched(dsn, ["tenant_b", *DECOYS])

    # --tenant and --tenants-file combine
    r = tm("up", "--dsn", dsn, "--tenants-file", "tenants.txt", "--tenant", "tenant_b",
           cwd=project)
    assert r.returncode == 0, show(r)
    assert await versions(dsn, "tenant_b") == [1, 2]


async def test_tenants_file_name_with_a_hash(dsn: str, project: Path) -> None:
    """A # inside a name is part of it: cut there, tenant_#1 would target tenant_."""
    await create_tenants(dsn, ["tenant_#1", "tenant_"])
    (project / "tenants.txt").write_text("tenant_#1  # the first\n", encoding="utf-8")
    r = tm("up", "--dsn", dsn, "--tenants-file", "tenants.txt", cwd=project)
    assert r.returncode == 0, show(r)
    assert await versions(dsn, "tenant_#1") == [1, 2]
    await assert_untouched(dsn, ["tenant_"])


async def test_up_exclude(dsn: str, project: Path, tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, "--exclude", "tenant_b", cwd=project)
    assert r.returncode == 0, show(r)
    assert "2 migrated" in r.stdout
    assert await versions(dsn, "tenant_a") == [1, 2]
    assert await versions(dsn, "tenant_c") == [1, 2]
    await assert_untouched(dsn, ["tenant_b", *DECOYS])


async def test_misspelt_exclude_is_an_error_and_touches_nothing(
    dsn: str, project: Path, tenants: list[str]
) -> None:
    """A typo in --exclude would otherwise migrate the very tenant meant to be left out."""
    r = tm("up", "--dsn", dsn, "--exclude", "tenant_bb", cwd=project)
    assert r.returncode == 2, show(r)
    assert "excluded tenant schema not found: 'tenant_bb'" in r.stderr, show(r)
    assert_no_traceback(r)
    await assert_untouched(dsn, [*tenants, *DECOYS])


async def test_nothing_matched_and_nothing_to_resume_say_so(
    dsn: str, project: Path, tenants: list[str]
) -> None:
    r = tm("up", "--dsn", dsn, "--prefix", "nomatch_", cwd=project)
    assert r.returncode == 0, show(r)
    assert "Nothing to do: no tenant schema matched." in r.stdout, show(r)

    assert tm("up", "--dsn", dsn, cwd=project).returncode == 0
    r = tm("resume", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert "Nothing to resume: the run has no failed or unfinished tenants." in r.stdout, show(r)


async def test_up_prefix(dsn: str, project: Path, tenants: list[str]) -> None:
    await create_tenants(dsn, ["acme_1", "acme_2", "acmex"])
    r = tm("up", "--dsn", dsn, "--prefix", "acme_", cwd=project)
    assert r.returncode == 0, show(r)
    assert "2 migrated" in r.stdout
    assert await versions(dsn, "acme_1") == [1, 2]
    assert await versions(dsn, "acme_2") == [1, 2]
    await assert_untouched(dsn, ["acmex", *TENANTS, *DECOYS])


async def test_unknown_tenant_touches_nothing(dsn: str, project: Path,
                                              tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, "--tenant", "tenant_a", "--tenant", "tenant_nope", cwd=project)
    assert r.returncode != 0, show(r)
    assert "tenant_nope" in r.stderr
    assert await schemas(dsn) == {*TENANTS, *DECOYS}  # no control schema either
    await assert_untouched(dsn, TENANTS + DECOYS)


async def test_unknown_tenant_is_a_one_line_usage_error(dsn: str, project: Path,
                                                        tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, "--tenant", "tenant_a", "--tenant", "tenant_nope", cwd=project)
    line = assert_usage_error(r)
    assert "tenant_nope" in line


async def test_missing_tenants_file_is_a_usage_error(dsn: str, project: Path,
                                                     tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, "--tenants-file", "nope.txt", cwd=project)
    line = assert_usage_error(r)
    assert "nope.txt" in line


async def test_unknown_target_version_is_a_usage_error(dsn: str, project: Path,
                                                       tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, "--target", "99", cwd=project)
    line = assert_usage_error(r)
    assert "99" in line
