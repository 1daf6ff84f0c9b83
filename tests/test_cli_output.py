"""What the command line prints: ``plan``, ``status``, awkward names, and structured (JSON) logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from helpers import (
    CLOSED_DSN,
    SECRET,
    assert_no_traceback,
    cli_env,
    create_tenants,
    execute,
    json_lines,
    quote_ident,
    relations,
    run_id_of,
    schemas,
    show,
    spawn,
    tm,
    versions,
    wait_for_sleep,
)


async def test_plan_renders_sql_and_touches_nothing(dsn: str, project: Path) -> None:
    await create_tenants(dsn, ["tenant_MixedCase", "tenantx_1"])
    r = tm("plan", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert_no_traceback(r)
    assert "1 tenant(s) targeted, 1 to migrate to version 2, 2 migration(s)" in r.stdout
    assert "SQL for tenant_MixedCase" in r.stdout
    assert 'CREATE TABLE "tenant_MixedCase".items' in r.stdout
    assert 'ALTER TABLE "tenant_MixedCase".items ADD CONSTRAINT' in r.stdout
    assert "{{schema}}" not in r.stdout

    r = tm("plan", "--json", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    data = json.loads(r.stdout)
    assert data["target"] == 2
    assert data["tenants"] == [{"tenant": "tenant_MixedCase", "current": None,
                                "pending": [1, 2]}]

    r = tm("up", "--dry-run", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert 'CREATE TABLE "tenant_MixedCase".items' in r.stdout

    r = tm("up", "--dry-run", "--json", "--target", "1", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert json.loads(r.stdout)["tenants"][0]["pending"] == [1]

    assert await schemas(dsn) == {"tenant_MixedCase", "tenantx_1"}  # no control schema
    assert await relations(dsn, "tenant_MixedCase") == set()  # no history, no table


async def test_plan_quotes_awkward_schema_names(dsn: str, project: Path) -> None:
    name = "tenant_O'Brien \"x\""
    await create_tenants(dsn, [name])
    r = tm("plan", "--dsn", dsn, "--tenant", name, cwd=project)
    assert r.returncode == 0, show(r)
    assert 'CREATE TABLE "tenant_O\'Brien ""x""".items' in r.stdout
    r = tm("up", "--dsn", dsn, "--tenant", name, cwd=project)
    assert r.returncode == 0, show(r)
    assert await versions(dsn, name) == [1, 2]


async def test_plan_shows_a_tenant_whose_name_cannot_be_rendered_and_goes_on(
    dsn: str, tmp_path: Path, make_migrations: Any
) -> None:
    """tenant_$$x sorts first, and its name would end the DO body: up would fail it alone,
    so plan names it and shows the SQL of another tenant instead of stopping (exit 2)."""
    make_migrations({
        "V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
        "V2__do.sql": "DO $$ BEGIN EXECUTE 'CREATE TABLE {{schema}}.t2 (id int)'; END $$;\n",
    })
    await create_tenants(dsn, ["tenant_$$x", "tenant_a"])
    for command in (["plan"], ["up", "--dry-run"]):
        r = tm(*command, "--dsn", dsn, cwd=tmp_path)
        assert r.returncode == 0, show(r)
        assert "1 tenant(s) whose name cannot be put safely" in r.stdout, show(r)
        assert "SQL for tenant_a:" in r.stdout, show(r)


async def test_names_that_look_like_rich_markup_or_emoji_print_as_themselves(
    dsn: str, project: Path
) -> None:
    names = ["tenant_:fire:", "tenant_[bold]x[/bold]", "tenant_:smile:[red]"]
    # A trailing backslash prints once; terminal control sequences print as \xNN, so a
    # name cannot recolour or retitle the terminal.
    backslash, control = "tenant_end\\", "tenant_\x1b]0;pwned\x07\x1b[31mRED"
    await create_tenants(dsn, [*names, backslash, control])
    r = tm("up", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    slowest = next(line for line in r.stdout.splitlines() if line.startswith("Slowest:"))
    for name in [*names, backslash, "tenant_\\x1b]0;pwned\\x07\\x1b[31mRED"]:
        assert f"{name} " in slowest, (name, slowest)
    assert "\x1b" not in r.stdout + r.stderr and "\x07" not in r.stdout + r.stderr
    # A failure table and status lines carry the names too.
    r = tm("down", "--dsn", dsn, "--target", "1", cwd=project)
    assert r.returncode == 0, show(r)
    await execute(dsn, f"INSERT INTO {quote_ident(names[0])}.items VALUES (1, 0)")
    await execute(dsn, f"INSERT INTO {quote_ident(control)}.items VALUES (1, 0)")
    r = tm("up", "--dsn", dsn, cwd=project)
    assert r.returncode == 1
    assert names[0] in r.stdout and "23514" in r.stdout
    # the "tenant failed" log events on stderr name it too
    assert "tenant_\\x1b]0;pwned" in r.stderr, show(r)
    assert "\x1b" not in r.stdout + r.stderr and "\x07" not in r.stdout + r.stderr
    r = tm("status", "--dsn", dsn, cwd=project)
    assert f"{names[0]}: at 1, pending V2" in r.stdout
    assert "\N{FIRE}" not in r.stdout + r.stderr
    assert "\N{SMILING FACE WITH OPEN MOUTH AND SMILING EYES}" not in r.stdout


async def test_status(dsn: str, project: Path, tenants: list[str]) -> None:
    r = tm("status", "--json", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    status = json.loads(r.stdout)
    assert status["by_version"] == {"-": 3}
    assert status["last_run"] is None
    assert "tenantmig" not in await schemas(dsn)  # status touched nothing

    assert tm("up", "--dsn", dsn, "--target", "1", cwd=project).returncode == 0
    assert tm("up", "--dsn", dsn, "--tenant", "tenant_a", cwd=project).returncode == 0

    r = tm("status", "--json", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    status = json.loads(r.stdout)
    assert status["head"] == 2 and status["tenants"] == 3
    assert status["by_version"] == {"1": 2, "2": 1}
    assert status["behind"] == [
        {"tenant": "tenant_b", "current": 1, "pending": [2]},
        {"tenant": "tenant_c", "current": 1, "pending": [2]},
    ]
    assert status["drifted"] == [] and status["failed_last_run"] == []

    r = tm("status", "--dsn", dsn, cwd=project)
    assert r.returncode == 0, show(r)
    assert "Status: 3 tenant(s), head is version 2." in r.stdout
    assert "2 tenant(s) behind head." in r.stdout
    assert "tenant_b: at 1, pending V2" in r.stdout

    r = tm("status", "--json", "--dsn", dsn, "--exclude", "tenant_b", "--exclude", "tenant_c",
           cwd=project)
    assert json.loads(r.stdout)["by_version"] == {"2": 1}


def tm_unread(*args: Any, cwd: Path) -> tuple[int, str]:
    """Run tenantmig with a stdout whose reader has gone (``tenantmig ... | head -0``):
    (exit code, stderr)."""
    with subprocess.Popen([sys.executable, "-m", "tenantmig", *map(str, args)], cwd=cwd,
                          env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # long before the program has started and printed anything
        err = proc.stderr.read()
        return proc.wait(timeout=120), err


@pytest.mark.parametrize("json_output", [False, True])
async def test_a_reader_that_goes_away_changes_no_exit_code(
    json_output: bool, dsn: str, project: Path, tenants: list[str]
) -> None:
    as_json = ["--json"] if json_output else []
    code, err = tm_unread("up", "--dsn", dsn, *as_json, cwd=project)
    assert code == 0, err
    assert "Traceback" not in err and "Task exception" not in err, err
    for t in tenants:
        assert await versions(dsn, t) == [1, 2]  # the run was whole; only its summary lost

    code, err = tm_unread("status", "--dsn", dsn, *as_json, cwd=project)
    assert (code, err) == (0, "")


async def test_json_logs(dsn: str, project: Path, tenants: list[str]) -> None:
    r = tm("up", "--dsn", dsn, "--log-format", "json", "--target", "1", cwd=project)
    assert r.returncode == 0, show(r)
    events = json_lines(r.stderr)  # every line parses
    assert events

    r = tm("up", "--dsn", dsn, "--log-format", "json", "-v", cwd=project)
    assert r.returncode == 0, show(r)
    events = json_lines(r.stderr)
    run_id = run_id_of(r.stdout)
    assert all("event" in e and "level" in e and "timestamp" in e for e in events)
    assert any(e["event"] == "run started" and e.get("run_id") == run_id for e in events)
    per_tenant = [e for e in events if "tenant" in e]
    assert {e["tenant"] for e in per_tenant} == set(tenants), r.stderr
    assert all(e.get("run_id") == run_id for e in per_tenant), r.stderr
    assert SECRET not in r.stderr


async def test_json_log_format_keeps_every_stderr_line_json(dsn: str, tmp_path: Path,
                                                            make_migrations: Any) -> None:
    make_migrations({
        "V1__create_items.sql": "CREATE TABLE {{schema}}.items (id int);\n",
        "V2__slow.sql": "SELECT pg_sleep(0.5);\nCREATE TABLE {{schema}}.marker (id int);\n",
    })
    await create_tenants(dsn, ["tenant_a", "tenant_b", "tenant_c"])
    proc = spawn("up", "--dsn", dsn, "--concurrency", "1", "--log-format", "json",
                  cwd=tmp_path)
    try:
        await wait_for_sleep(dsn, proc, 1)
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 143, stderr
    json_lines(stderr)

    make_migrations({"V3__bad.sql": "SELECT {{tenant}} FROM {{schema}}.items;\n"})
    r = tm("up", "--dsn", CLOSED_DSN, "--log-format", "json", cwd=tmp_path)
    assert r.returncode == 2, show(r)
    events = json_lines(r.stderr)
    assert any("V3__bad.sql" in json.dumps(e) for e in events)
