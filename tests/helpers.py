"""Helpers shared by the test suite: ``from helpers import ...`` (``tests/`` is on ``sys.path``
because ``tests/conftest.py`` sits there and ``tests/`` is no package).

One copy of each: reading the database, tenantmig's own tables (history, runs, ledger), waiting
for a condition, the migrations several test files share, and running the command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg
import pytest

import tenantmig

__all__ = [
    "BASIC",
    "CLOSED_DSN",
    "DATA_MIGRATIONS",
    "DECOYS",
    "HISTORY_COLUMNS",
    "ONCE_ONLY",
    "SECRET",
    "TENANTS",
    "U2",
    "V1",
    "V2",
    "MakeMigrations",
    "assert_exactly_once",
    "assert_no_traceback",
    "assert_untouched",
    "assert_usage_error",
    "cli_env",
    "create_tenants",
    "dsn_with_database",
    "execute",
    "fetch",
    "fetchval",
    "fresh_database",
    "has_constraint",
    "history",
    "history_tuples",
    "index_valid",
    "json_lines",
    "latest_run",
    "ledger",
    "migrate_with_bad_data",
    "names",
    "quote_ident",
    "relations",
    "run_id_of",
    "runs",
    "schemas",
    "show",
    "spawn",
    "tm",
    "versions",
    "wait_for_sleep",
    "wait_for_sql",
    "wait_until",
    "with_password",
]

_BATCH = 200  # schemas per transaction: keeps the lock table small for thousands of tenants


class MakeMigrations(Protocol):
    """The ``make_migrations`` fixture: writes dedented files into ``tmp_path/subdir``."""

    def __call__(self, files: dict[str, str], subdir: str = "migrations") -> Path: ...


def quote_ident(name: str) -> str:
    """Quote an SQL identifier: ``a"b`` -> ``"a""b"``."""
    return '"' + name.replace('"', '""') + '"'


def dsn_with_database(dsn: str, dbname: str) -> str:
    """The URL ``dsn`` with its database replaced by ``dbname``."""
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise ValueError(f"expected a postgresql:// URL DSN, got {dsn!r}")
    return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))


async def create_tenants(dsn: str, names: Iterable[str], *, with_table: bool = False) -> None:
    """Create a schema per name (optionally with a ``things(id int primary key)`` table)."""
    statements: list[str] = []
    for name in names:
        schema = quote_ident(name)
        statements.append(f"CREATE SCHEMA {schema};")
        if with_table:
            statements.append(f"CREATE TABLE {schema}.things (id int PRIMARY KEY);")
    per_tenant = 2 if with_table else 1
    batch = _BATCH * per_tenant
    conn = await asyncpg.connect(dsn)
    try:
        for start in range(0, len(statements), batch):
            async with conn.transaction():
                await conn.execute("\n".join(statements[start : start + batch]))
    finally:
        await conn.close()


async def schemas(dsn: str, *, include_public: bool = False) -> set[str]:
    """All non-system schema names (``pg_*`` and ``information_schema`` excluded).

    ``public`` is left out unless ``include_public`` is true.
    """
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT nspname FROM pg_namespace
            WHERE nspname NOT LIKE 'pg\\_%' AND nspname <> 'information_schema'
            """
        )
    finally:
        await conn.close()
    names = {r["nspname"] for r in rows}
    if not include_public:
        names.discard("public")
    return names


async def relations(dsn: str, schema: str) -> set[str]:
    """Names of tables, indexes, sequences, views and user-defined types in ``schema``.

    Implicit types (table row types, array types, multirange types) are left out.
    """
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """
            SELECT c.relname AS name
            FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
            WHERE n.nspname = $1
            UNION
            SELECT t.typname
            FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
            WHERE n.nspname = $1
              AND t.typrelid = 0
              AND NOT EXISTS (SELECT 1 FROM pg_type e WHERE e.typarray = t.oid)
              AND NOT EXISTS (SELECT 1 FROM pg_range r WHERE r.rngmultitypid = t.oid)
            """,
            schema,
        )
    finally:
        await conn.close()
    return {r["name"] for r in rows}


async def fetch(dsn: str, sql: str, *args: Any) -> list[asyncpg.Record]:
    """Rows of one query on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql, *args))
    finally:
        await conn.close()


async def fetchval(dsn: str, sql: str, *args: Any) -> Any:
    """The first value of one query on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetchval(sql, *args)
    finally:
        await conn.close()


async def execute(dsn: str, sql: str, *args: Any) -> None:
    """One statement on a connection of its own."""
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(sql, *args)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def fresh_database(server_dsn: str, name: str) -> AsyncIterator[str]:
    """Create database *name* on the server, yield its DSN, drop it (WITH FORCE) after."""
    conn = await asyncpg.connect(server_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {quote_ident(name)}")
    finally:
        await conn.close()
    try:
        yield dsn_with_database(server_dsn, name)
    finally:
        conn = await asyncpg.connect(server_dsn)
        try:
            await conn.execute(f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")
        finally:
            await conn.close()


def names(n: int, prefix: str = "tenant_", *, width: int = 3) -> list[str]:
    """``n`` tenant names, ``prefix`` then the number zero-padded to ``width`` digits."""
    return [f"{prefix}{i:0{width}d}" for i in range(n)]


# --- tenantmig's own tables -------------------------------------------------------------------

HISTORY_COLUMNS = "version, description, checksum, run_id, applied_at"


async def history(dsn: str, tenant: str, *,
                  columns: str = HISTORY_COLUMNS) -> list[asyncpg.Record] | None:
    """The tenant's history rows (``columns`` of them), oldest version first; None when it has
    no history table."""
    table = f"{quote_ident(tenant)}.tenantmig_history"
    conn = await asyncpg.connect(dsn)
    try:
        if not await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", table):
            return None
        return list(await conn.fetch(f"SELECT {columns} FROM {table} ORDER BY version"))
    finally:
        await conn.close()


async def versions(dsn: str, tenant: str) -> list[int] | None:
    """The versions in the tenant's history, oldest first; None without a history table."""
    rows = await history(dsn, tenant, columns="version")
    return None if rows is None else [r["version"] for r in rows]


async def history_tuples(dsn: str, tenant: str) -> list[tuple[int, str, str]] | None:
    """(version, checksum, run_id) rows of a tenant's history; None without the table."""
    rows = await history(dsn, tenant, columns="version, checksum, run_id")
    return None if rows is None else [(r["version"], r["checksum"], r["run_id"]) for r in rows]


async def runs(dsn: str) -> list[asyncpg.Record]:
    """Rows of tenantmig.runs, oldest first ([] when the control schema does not exist)."""
    if not await fetchval(dsn, "SELECT to_regclass('tenantmig.runs') IS NOT NULL"):
        return []
    return await fetch(dsn, "SELECT * FROM tenantmig.runs ORDER BY started_at, run_id")


async def latest_run(dsn: str) -> asyncpg.Record:
    """The row of tenantmig.runs that started last."""
    rows = await fetch(dsn, "SELECT * FROM tenantmig.runs ORDER BY started_at DESC, run_id DESC "
                            "LIMIT 1")
    assert rows
    return rows[0]


async def ledger(dsn: str, run_id: str | None) -> dict[str, asyncpg.Record]:
    """The run's ledger rows by tenant."""
    assert run_id is not None, "no run was recorded"
    rows = await fetch(dsn, "SELECT * FROM tenantmig.ledger WHERE run_id = $1", run_id)
    return {r["tenant"]: r for r in rows}


async def index_valid(dsn: str, tenant: str, name: str) -> bool | None:
    """``pg_index.indisvalid`` of the tenant's index ``name``; None when there is no such index."""
    return await fetchval(  # type: ignore[no-any-return]
        dsn, "SELECT i.indisvalid FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relname = $2",
        tenant, name)


# --- waiting ----------------------------------------------------------------------------------


async def wait_until(check: Callable[[], Awaitable[bool]], *, within: float, what: str,
                     proc: Any = None, every: float = 0.02) -> None:
    """Poll ``check`` until it is true; fail after ``within`` seconds, or at once when the
    subprocess ``proc`` (a ``Popen``) exits first."""
    deadline = time.monotonic() + within
    while not await check():
        if proc is not None and proc.poll() is not None:
            pytest.fail(f"runner exited ({proc.returncode}) while waiting for {what}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(every)


async def wait_for_sql(dsn: str, sql: str, *args: Any, within: float = 10.0) -> None:
    """Poll until *sql* returns true."""
    async def holds() -> bool:
        return bool(await fetchval(dsn, sql, *args))

    await wait_until(holds, within=within, what=sql)


# --- migrations that several files use ----------------------------------------------------------

ONCE_ONLY = {
    # Each would fail if applied twice to the same tenant.
    "V1__tables.sql": """\
        CREATE TABLE {{schema}}.t1 (id int);
        CREATE TABLE {{schema}}.counter (v int PRIMARY KEY);
        INSERT INTO {{schema}}.counter VALUES (1);
        """,
    "V2__second.sql": """\
        ALTER TABLE {{schema}}.t1 ADD COLUMN note text;
        INSERT INTO {{schema}}.counter VALUES (2);
        """,
    "V3__python.py": """\
        async def up(ctx):
            await ctx.execute("INSERT INTO {{schema}}.counter VALUES ($1)", 3)
            await ctx.execute("CREATE TABLE {{schema}}.t3 (id int)")
        """,
    "V4__fourth.sql": """\
        CREATE TABLE {{schema}}.t4 (id int);
        INSERT INTO {{schema}}.counter VALUES (4);
        """,
}


async def assert_exactly_once(dsn: str, tenants: str | Iterable[str], head: int = 4) -> None:
    """Each tenant (one name or several) holds versions 1..head in its history and in its
    ``counter`` table, each once: migrations that insert into ``counter`` (``ONCE_ONLY``)."""
    for tenant in [tenants] if isinstance(tenants, str) else tenants:
        assert await versions(dsn, tenant) == list(range(1, head + 1)), tenant
        counter = await fetch(dsn, f"SELECT v FROM {quote_ident(tenant)}.counter ORDER BY v")
        assert [r["v"] for r in counter] == list(range(1, head + 1)), tenant


DATA_MIGRATIONS = {
    "V1__things.sql": """\
        CREATE TABLE {{schema}}.things (id int GENERATED ALWAYS AS IDENTITY PRIMARY KEY, n int);
        INSERT INTO {{schema}}.things (n) VALUES (1), (2);
        """,
    "V2__check.sql": """\
        -- tenantmig:allow constraint-not-valid test: the scan must fail (23514) on bad rows
        ALTER TABLE {{schema}}.things ADD CONSTRAINT things_n_positive CHECK (n > 0);
        """,
    "V3__more.sql": "CREATE TABLE {{schema}}.more (id int);\n",
}


async def migrate_with_bad_data(dsn: str, folder: Path, tenants: list[str],
                                bad: list[str]) -> tenantmig.Report:
    """Bring ``tenants`` to V1 of ``DATA_MIGRATIONS``, give the ``bad`` ones a row V2's CHECK
    refuses, then run ``up``."""
    async with tenantmig.Engine(dsn, migrations=folder, concurrency=4) as engine:
        assert (await engine.upgrade(target=1)).ok
        for t in bad:
            await execute(dsn, f"INSERT INTO {quote_ident(t)}.things (n) VALUES (-1)")
        return await engine.upgrade()


# --- the command line -------------------------------------------------------------------------
#
# The ``test_cli_*`` files run the command line the way a user runs it: ``python -m tenantmig ...``
# as a subprocess with its own working directory and an environment without ``TENANTMIG_DSN``
# (unless the test sets it) and without ``COLUMNS`` (so output is what a non-terminal user, e.g.
# CI, gets), then check the exit code, stdout/stderr and the database (read with asyncpg;
# nothing is mocked).


def cli_env(**extra: str) -> dict[str, str]:
    """This process's environment without tenantmig's DSN variables or a terminal size (so
    output is what a non-terminal user, e.g. CI, gets), plus ``extra``."""
    drop = {"TENANTMIG_DSN", "TENANTMIG_TEST_DSN", "COLUMNS", "LINES"}
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(extra)
    return env


# A DSN nobody listens on, with a password that must never be shown.
CLOSED_DSN = "postgresql://u:s3cret@127.0.0.1:1/db"
SECRET = "s3cret"

V1 = "V1__create_items.sql"
V2 = "V2__qty_positive.sql"
U2 = "U2__qty_positive.sql"
BASIC = {
    V1: "CREATE TABLE {{schema}}.items (id int PRIMARY KEY, qty int NOT NULL);\n",
    # The failure tests insert qty <= 0 for some tenants and need V2's validating scan to
    # reject them (23514), so the CHECK is added without NOT VALID on purpose.
    V2: "-- tenantmig:allow constraint-not-valid test: the scan must fail (23514) on tenants "
        "with bad rows\n"
        "ALTER TABLE {{schema}}.items ADD CONSTRAINT items_qty_positive CHECK (qty > 0);\n",
    U2: "ALTER TABLE {{schema}}.items DROP CONSTRAINT items_qty_positive;\n",
}


# The tenants the ``tenants`` fixture creates, and schemas beside them that are no tenants.
TENANTS = ["tenant_a", "tenant_b", "tenant_c"]
DECOYS = ["tenantx_1", "tenant"]


def tm(*args: Any, cwd: Path | str, env: dict[str, str] | None = None,
       timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``python -m tenantmig ARGS`` run to its end, its output captured."""
    return subprocess.run(
        [sys.executable, "-m", "tenantmig", *map(str, args)],
        cwd=cwd,
        env=cli_env() if env is None else env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def spawn(*args: Any, cwd: Path) -> subprocess.Popen[str]:
    """``python -m tenantmig ARGS`` in the background, its output in pipes."""
    return subprocess.Popen(
        [sys.executable, "-m", "tenantmig", *map(str, args)],
        cwd=cwd, env=cli_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def show(r: subprocess.CompletedProcess[str]) -> str:
    """The exit code and output of a finished command, for assertion messages."""
    return f"exit {r.returncode}\n--- stdout\n{r.stdout}\n--- stderr\n{r.stderr}"


def assert_no_traceback(r: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, show(r)


def assert_usage_error(r: subprocess.CompletedProcess[str]) -> str:
    """Exit 2 and one error message, no traceback. Returns the message with the hard wraps
    of the 80-column stderr console undone (their being there is a bug of its own, tested
    by test_error_messages_are_one_line)."""
    assert r.returncode == 2, show(r)
    assert_no_traceback(r)
    assert r.stderr.startswith("tenantmig: error: "), show(r)
    assert r.stderr.count("tenantmig: error:") == 1, show(r)
    return r.stderr.replace("\n", "")


def json_lines(text: str) -> list[dict[str, Any]]:
    """Each non-blank line of ``text`` parsed as JSON."""
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def with_password(dsn: str) -> str:
    """The superuser ``dsn`` with the password ``SECRET`` written into it."""
    return dsn.replace("postgresql://postgres@", f"postgresql://postgres:{SECRET}@", 1)


async def wait_for_sleep(dsn: str, proc: subprocess.Popen[str], count: int) -> None:
    """Until *count* backends of the run sit in pg_sleep (tenants mid-migration)."""
    dbname = dsn.rsplit("/", 1)[1]
    started = time.monotonic()
    while True:
        rows = await fetch(
            dsn,
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 "
            "AND wait_event = 'PgSleep'",
            dbname,
        )
        if rows[0][0] >= count:
            return
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - started < 30
        await asyncio.sleep(0.02)


async def has_constraint(dsn: str, tenant: str, name: str) -> bool:
    """Whether the tenant schema holds a constraint ``name``."""
    rows = await fetch(
        dsn,
        "SELECT 1 FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace "
        "WHERE n.nspname = $1 AND c.conname = $2",
        tenant, name,
    )
    return bool(rows)


async def assert_untouched(dsn: str, names: list[str]) -> None:
    """None of these schemas holds any relation."""
    for name in names:
        assert await relations(dsn, name) == set(), name


def run_id_of(stdout: str) -> str:
    """The run id in the summary line ``Run <id>: ...`` of ``up``, ``down`` or ``resume``."""
    match = re.search(r"^Run (\S+):", stdout, re.MULTILINE)
    assert match, stdout
    return match.group(1)
