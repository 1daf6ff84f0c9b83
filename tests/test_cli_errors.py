"""Errors before any tenant is touched: migration files that do not load, and a database that
cannot be reached, told in one line that never shows the password.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from helpers import (
    CLOSED_DSN,
    DECOYS,
    SECRET,
    TENANTS,
    assert_no_traceback,
    assert_untouched,
    assert_usage_error,
    cli_env,
    schemas,
    show,
    tm,
)


def error_lines(r: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in r.stderr.splitlines() if line.strip()]


def assert_one_line_error(r: subprocess.CompletedProcess[str]) -> str:
    assert_usage_error(r)
    lines = error_lines(r)
    assert len(lines) == 1, show(r)
    return lines[0]


LOAD_ERRORS = {
    "placeholder": (
        {"V3__bad.sql": "-- uses a placeholder that does not exist\n\n"
                        "SELECT {{tenant}} FROM {{schema}}.items;\n"},
        "migrations/V3__bad.sql:3: unknown placeholder",
    ),
    "directive": (
        {"V3__bad.sql": "-- tenantmig:no-transactions\nSELECT 1 FROM {{schema}}.items;\n"},
        "migrations/V3__bad.sql:1: unknown directive",
    ),
    "duplicate": (
        {"V01__again.sql": "SELECT 1 FROM {{schema}}.items;\n"},
        "duplicate version 1",
    ),
    "undo_without_v": (
        {"U7__nothing.sql": "SELECT 1 FROM {{schema}}.items;\n"},
        "migrations/U7__nothing.sql:",
    ),
    "bad_name": (
        {"V3_missing_underscore.sql": "SELECT 1 FROM {{schema}}.items;\n"},
        "migrations/V3_missing_underscore.sql:",
    ),
    "python_syntax": (
        {"V3__broken.py": "async def up(ctx):\n    await ctx.execute(\n\n"},
        "migrations/V3__broken.py:",
    ),
}


@pytest.mark.parametrize("case", sorted(LOAD_ERRORS))
def test_load_error_before_any_connection(case: str, project: Path, make_migrations: Any) -> None:
    files, expected = LOAD_ERRORS[case]
    make_migrations(files)
    for command in ("up", "plan", "status"):
        r = tm(command, "--dsn", CLOSED_DSN, cwd=project)
        assert r.returncode == 2, show(r)
        assert_no_traceback(r)
        assert re.search(r"^tenantmig: error: \S+:\d+: ", r.stderr, re.MULTILINE), show(r)
        assert expected in r.stderr, show(r)
        assert "cannot connect" not in r.stderr and "127.0.0.1" not in r.stderr, show(r)
        assert SECRET not in r.stdout + r.stderr


def test_error_messages_are_one_line(project: Path, make_migrations: Any) -> None:
    # no database at all
    r = tm("up", cwd=project)
    assert assert_one_line_error(r) == (
        "tenantmig: error: no database: give --dsn, set TENANTMIG_DSN, or put dsn in "
        "tenantmig.toml"
    )
    # a load error keeps its `file:line: message` on one line (grep-able, clickable)
    make_migrations(LOAD_ERRORS["placeholder"][0])
    r = tm("up", "--dsn", CLOSED_DSN, cwd=project)
    assert assert_one_line_error(r) == (
        "tenantmig: error: migrations/V3__bad.sql:3: unknown placeholder "
        "{{tenant}}; only {{schema}} exists"
    )
    # ... even with a long absolute path
    r = tm("up", "--dsn", CLOSED_DSN, "--migrations", project / "migrations", cwd=project)
    line = assert_one_line_error(r)
    assert f"{project / 'migrations' / 'V3__bad.sql'}:3: unknown placeholder" in line


async def test_load_error_touches_a_reachable_database_not(dsn: str, project: Path,
                                                            make_migrations: Any,
                                                            tenants: list[str]) -> None:
    make_migrations(LOAD_ERRORS["placeholder"][0])
    r = tm("up", "--dsn", dsn, cwd=project)
    assert r.returncode == 2, show(r)
    await assert_untouched(dsn, TENANTS)
    assert await schemas(dsn) == {*TENANTS, *DECOYS}


@pytest.mark.parametrize("log_format", ["console", "json"])
@pytest.mark.parametrize("command", ["up", "status", "ledger"])
def test_unreachable_database_never_shows_the_password(command: str, log_format: str,
                                                       project: Path) -> None:
    r = tm(command, "--dsn", CLOSED_DSN, "--log-format", log_format, "-v", cwd=project)
    assert r.returncode != 0, show(r)
    assert "127.0.0.1" in r.stderr, show(r)
    assert SECRET not in r.stdout and SECRET not in r.stderr, show(r)

    r = tm(command, "--log-format", log_format, cwd=project,
           env=cli_env(TENANTMIG_DSN=CLOSED_DSN))
    assert r.returncode != 0, show(r)
    assert SECRET not in r.stdout and SECRET not in r.stderr, show(r)


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_unreachable_database_is_exit_2_naming_the_host(log_format: str, project: Path) -> None:
    r = tm("up", "--dsn", CLOSED_DSN, "--log-format", log_format, cwd=project)
    assert r.returncode == 2, show(r)
    assert_no_traceback(r)
    assert "127.0.0.1" in r.stderr
    assert SECRET not in r.stdout + r.stderr


@pytest.mark.parametrize(
    ("password", "fragments"),
    [
        # Generated passwords with characters a URL needs percent-encoded: each made
        # asyncpg's parser quote a piece of the password in its error.
        ("Zq/x9!kP", ["Zq", "x9!kP"]),
        ("p@ss:w@rd", ["w@rd", "ss:w"]),
        ("pa?ss", ["pa?", "?ss"]),
        ("pa#ss", ["pa#", "#ss"]),
        # asyncpg took the host to be "ss@127.0.0.1" and failed to resolve it
        ("p@ss", ["ss@127"]),
    ],
)
def test_dsn_that_does_not_parse_is_exit_2_without_the_password(
    password: str, fragments: list[str], project: Path
) -> None:
    r = tm("status", "--dsn", f"postgresql://u:{password}@127.0.0.1:1/db", cwd=project)
    assert r.returncode == 2, show(r)
    assert_no_traceback(r)
    assert "cannot parse the DSN" in r.stderr and "percent-encoded" in r.stderr, show(r)
    for fragment in [password, *fragments]:
        assert fragment not in r.stdout + r.stderr, (fragment, show(r))


@pytest.mark.parametrize("form", ["query", "userinfo-and-query"])
async def test_a_query_string_password_with_an_at_sign_is_masked(
    dsn: str, project: Path, tenants: list[str], form: str
) -> None:
    # the test cluster trusts local connections, so any password is accepted
    parts = urlsplit(dsn)
    database = parts.path.lstrip("/")
    if form == "query":
        url = (f"postgresql:///{database}?host={parts.hostname}&port={parts.port}"
               "&user=postgres&password=Sup3r@Secret")
    else:
        url = (f"postgresql://postgres@{parts.hostname}:{parts.port}/{database}"
               "?password=Sup3r@Secret")
    r = tm("status", "--json", "--dsn", url, cwd=project)
    assert r.returncode == 0, show(r)
    assert "Sup3r" not in r.stdout + r.stderr and "Secret" not in r.stdout + r.stderr, show(r)
    assert json.loads(r.stdout)["database"].endswith("password=***"), r.stdout


async def test_a_password_inside_other_words_leaves_them_alone(
    dsn: str, project: Path, tenants: list[str]
) -> None:
    """Only the password itself is hidden, not the same letters inside other words: with
    the password ``ant`` the message still names ``nosuch_tenant`` (masking it would
    garble the message and give the password away)."""
    parts = urlsplit(dsn)
    if parts.password:
        pytest.skip("the test server's DSN has a password of its own")
    netloc = parts.netloc.replace("@", ":ant@", 1) if "@" in parts.netloc else (
        f"postgres:ant@{parts.netloc}")
    with_password = urlunsplit(parts._replace(netloc=netloc))
    r = tm("up", "--dsn", with_password, "--tenant", "nosuch_tenant", cwd=project)
    assert r.returncode == 2, show(r)
    assert "tenant schema not found: 'nosuch_tenant'" in r.stderr, show(r)
    assert "***" not in r.stderr, show(r)
