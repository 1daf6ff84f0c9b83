"""Where the command line takes its settings from: ``--dsn``, ``$TENANTMIG_DSN``,
``tenantmig.toml``, ``pyproject.toml``, and which one wins.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest
from helpers import (
    CLOSED_DSN,
    TENANTS,
    assert_no_traceback,
    assert_untouched,
    assert_usage_error,
    cli_env,
    json_lines,
    schemas,
    show,
    tm,
    versions,
)


async def test_dsn_from_environment(dsn: str, project: Path, tenants: list[str]) -> None:
    r = tm("up", cwd=project, env=cli_env(TENANTMIG_DSN=dsn))
    assert r.returncode == 0, show(r)
    assert "3 migrated" in r.stdout
    for t in tenants:
        assert await versions(dsn, t) == [1, 2]


async def test_dsn_option_beats_environment(dsn: str, project: Path,
                                            tenants: list[str]) -> None:
    r = tm("status", "--dsn", dsn, cwd=project, env=cli_env(TENANTMIG_DSN=CLOSED_DSN))
    assert r.returncode == 0, show(r)
    assert "3 tenant(s)" in r.stdout


def run_started(stderr: str) -> dict[str, Any]:
    events = [e for e in json_lines(stderr) if e.get("event") == "run started"]
    assert len(events) == 1, stderr
    return events[0]


async def test_tenantmig_toml_with_env_var_and_concurrency(dsn: str, project: Path,
                                                           tenants: list[str]) -> None:
    (project / "tenantmig.toml").write_text(
        'dsn = "${TM_TEST_DATABASE_URL}"\nconcurrency = 3\n', encoding="utf-8"
    )
    r = tm("up", "--log-format", "json", cwd=project,
           env=cli_env(TM_TEST_DATABASE_URL=dsn))
    assert r.returncode == 0, show(r)
    assert run_started(r.stderr)["concurrency"] == 3
    for t in tenants:
        assert await versions(dsn, t) == [1, 2]

    # the environment variable beats the file
    (project / "tenantmig.toml").write_text(f'dsn = "{CLOSED_DSN}"\n', encoding="utf-8")
    r = tm("status", cwd=project, env=cli_env(TENANTMIG_DSN=dsn))
    assert r.returncode == 0, show(r)
    assert "All tenants at head" in r.stdout

    # an unset variable is a configuration error
    (project / "tenantmig.toml").write_text('dsn = "${TM_NOT_SET_ANYWHERE}"\n',
                                            encoding="utf-8")
    r = tm("status", cwd=project)
    assert_usage_error(r)


async def test_pyproject_tool_section(dsn: str, project: Path, tenants: list[str]) -> None:
    (project / "pyproject.toml").write_text(
        '[project]\nname = "app"\nversion = "1"\n\n'
        f'[tool.tenantmig]\ndsn = "{dsn}"\nconcurrency = 2\n',
        encoding="utf-8",
    )
    r = tm("up", "--log-format", "json", cwd=project)
    assert r.returncode == 0, show(r)
    assert run_started(r.stderr)["concurrency"] == 2
    for t in tenants:
        assert await versions(dsn, t) == [1, 2]

    # the command line beats the file
    r = tm("up", "--log-format", "json", "--concurrency", "5", "--target", "1", cwd=project)
    assert r.returncode == 0, show(r)
    assert "Nothing to do" in r.stdout


async def test_unknown_config_key(dsn: str, project: Path, tenants: list[str]) -> None:
    (project / "tenantmig.toml").write_text(f'dsn = "{dsn}"\nconcurency = 3\n',
                                            encoding="utf-8")
    r = tm("up", cwd=project)
    assert r.returncode == 2, show(r)
    assert_no_traceback(r)
    assert "concurency" in r.stderr
    await assert_untouched(dsn, TENANTS)
    assert "tenantmig" not in await schemas(dsn)

    (project / "tenantmig.toml").unlink()
    (project / "pyproject.toml").write_text(
        f'[tool.tenantmig]\ndsn = "{dsn}"\nmigration = "m"\n', encoding="utf-8"
    )
    r = tm("up", cwd=project)
    assert r.returncode == 2, show(r)
    assert_no_traceback(r)
    assert "migration" in r.stderr
    await assert_untouched(dsn, TENANTS)


def test_unset_variable_in_the_config_dsn_is_named(project: Path) -> None:
    (project / "tenantmig.toml").write_text(
        'dsn = "postgresql://u:${TM_TEST_UNSET_PASSWORD}@127.0.0.1:1/db"\n'
    )
    r = tm("status", cwd=project, env=cli_env())
    assert r.returncode == 2, show(r)
    assert "TM_TEST_UNSET_PASSWORD" in r.stderr, show(r)
    assert_no_traceback(r)


@pytest.mark.parametrize(("setting", "message"), [
    ('pgbouncer = "false"', "pgbouncer must be true or false"),
    ('atomic_tenant = "false"', "atomic_tenant must be true or false"),
    ("prefix = 5", "prefix must be a string"),
    ('control_schema = ["a"]', "control_schema must be a string"),
    ('control_schema = "public"', "control_schema 'public' is a schema of PostgreSQL's"),
    ('lock_timeout = "0.4ms"', "shorter than 1ms"),
    ("lock_timeout = true", "lock_timeout must be a duration"),
    ('lock_timeout = "600h"', "more than PostgreSQL allows"),
])
def test_config_values_of_the_wrong_kind_are_refused(
    project: Path, setting: str, message: str
) -> None:
    (project / "tenantmig.toml").write_text(f'dsn = "{CLOSED_DSN}"\n{setting}\n')
    r = tm("status", cwd=project, env=cli_env())
    assert message in assert_usage_error(r), show(r)


async def test_command_line_turns_off_what_the_config_file_turns_on(
    dsn: str, project: Path, tenants: list[str]
) -> None:
    # the no-transaction migration would be refused through PgBouncer
    (project / "migrations" / "V3__idx.sql").write_text(
        "-- tenantmig:no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS i ON {{schema}}.items (id);\n")
    (project / "tenantmig.toml").write_text(f'dsn = "{dsn}"\npgbouncer = true\n')
    r = tm("up", cwd=project, env=cli_env())
    assert "through PgBouncer" in assert_usage_error(r), show(r)
    r = tm("up", "--no-pgbouncer", cwd=project, env=cli_env())
    assert r.returncode == 0, show(r)
    for t in tenants:
        assert await versions(dsn, t) == [1, 2, 3]


async def test_a_dollar_in_a_command_line_dsn_is_part_of_the_password(
    dsn: str, project: Path, tenants: list[str]
) -> None:
    # the test cluster trusts local connections, so any password is accepted
    parts = urlsplit(dsn)
    netloc = f"postgres:pa$HOME@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
    r = tm("status", "--dsn", urlunsplit(parts._replace(netloc=netloc)), cwd=project,
           env=cli_env(HOME="/x"))
    assert r.returncode == 0, show(r)
