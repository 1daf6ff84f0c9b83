"""The other commands: ``lint`` (and ``lint --fix``), ``new`` and ``demo``."""

from __future__ import annotations

import json
import re
import socket
from pathlib import Path

import pytest
from helpers import (
    assert_no_traceback,
    show,
    tm,
)


def test_contract_commands_lint_and_new_exist(tmp_path: Path) -> None:
    for command in ("lint", "new"):
        r = tm(command, "--help", cwd=tmp_path)
        assert r.returncode == 0, show(r)


def _accepts_connections(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.slow
def test_demo_end_to_end() -> None:
    repo = Path(__file__).resolve().parent.parent
    r = tm("demo", "--tenants", "20", cwd=repo, timeout=300)
    assert r.returncode == 0, show(r)
    assert_no_traceback(r)
    match = re.search(r"PostgreSQL running at (postgresql://\S+?:(\d+)/\S+) \(data in (.+?)\)",
                      r.stdout)
    assert match, r.stdout
    port, datadir = int(match.group(2)), Path(match.group(3))
    assert "Created 20 tenant schemas" in r.stdout
    assert "Status: 20 tenant(s)" in r.stdout, r.stdout
    assert "(head)" in r.stdout and "All tenants at head." in r.stdout
    assert "Nothing to do" in r.stdout
    assert "Stopped the cluster" in r.stdout
    assert not _accepts_connections(port)
    assert not datadir.exists()


def test_lint_fix_qualifies_names_then_lint_passes(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "V1__t.sql").write_text(
        "CREATE TABLE {{schema}}.accounts (id bigint PRIMARY KEY);\n"
        "CREATE TABLE events (id bigint PRIMARY KEY, account_id bigint "
        "REFERENCES accounts (id));\n"
    )
    before = tm("lint", "--migrations", str(folder), cwd=tmp_path)
    # A warning since issue 14: the name resolves in the tenant (its search_path).
    assert before.returncode == 0, show(before)
    assert "V1__t.sql:2 unqualified-name" in before.stdout, show(before)
    assert "2 warning(s)" in before.stdout, show(before)

    fixed = tm("lint", "--fix", "--migrations", str(folder), cwd=tmp_path)
    assert fixed.returncode == 0, show(fixed)
    assert "fixed" in fixed.stdout and "checksums" in fixed.stdout, show(fixed)
    text = (folder / "V1__t.sql").read_text()
    assert "CREATE TABLE {{schema}}.events" in text
    assert "REFERENCES {{schema}}.accounts" in text
    after = tm("lint", "--migrations", str(folder), cwd=tmp_path)
    assert after.returncode == 0 and "unqualified-name" not in after.stdout, show(after)


def test_lint_fix_takes_a_file_that_never_names_the_schema(tmp_path: Path) -> None:
    """SQL ported from another tool names no {{schema}} at all: it loads (issue 14: it
    runs with the tenant first on search_path), lint flags its names, and --fix
    qualifies them; with --json the output stays one JSON document."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "V1__base.sql").write_text(
        "CREATE TABLE customers (id bigint PRIMARY KEY, name text);\n"
        "CREATE INDEX customers_name_idx ON customers (name);\n")
    before = tm("lint", "--migrations", str(folder), cwd=tmp_path)
    assert before.returncode == 0 and not before.stderr, show(before)
    assert "V1__base.sql:1 unqualified-name" in before.stdout, show(before)
    fixed = tm("lint", "--fix", "--json", "--migrations", str(folder), cwd=tmp_path)
    assert fixed.returncode == 0, show(fixed)
    data = json.loads(fixed.stdout)
    assert data["fixed"] == [str(folder / "V1__base.sql")] and data["blocking"] == 0
    text = (folder / "V1__base.sql").read_text()
    assert "CREATE TABLE {{schema}}.customers" in text
    assert "ON {{schema}}.customers (name)" in text
