"""Transactional migrations through PgBouncer in transaction pooling mode."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import asyncpg
import pytest
from helpers import assert_exactly_once, create_tenants, fetchval

import tenantmig

PGBOUNCER = shutil.which("pgbouncer") or "/usr/sbin/pgbouncer"

pytestmark = pytest.mark.skipif(
    not Path(PGBOUNCER).exists(), reason="pgbouncer is not installed (.ci/run installs it)"
)

MIGRATIONS = {
    "V1__tables.sql": """\
        CREATE TABLE {{schema}}.items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
        CREATE TABLE {{schema}}.counter (v int PRIMARY KEY);
        INSERT INTO {{schema}}.counter VALUES (1);
        """,
    "V2__column.sql": """\
        -- tenantmig:lock-timeout=2s
        ALTER TABLE {{schema}}.items ADD COLUMN note text;
        INSERT INTO {{schema}}.counter VALUES (2);
        """,
    "V3__python.py": """\
        async def up(ctx):
            await ctx.execute("INSERT INTO {{schema}}.counter VALUES ($1)", 3)
        """,
    "V4__more.sql": """\
        CREATE TABLE {{schema}}.more (id int);
        INSERT INTO {{schema}}.counter VALUES (4);
        """,
}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def bouncer(pgbouncer: tuple[str, Path]) -> str:
    """A PgBouncer in transaction mode in front of the test server, with few server
    connections so that clients really share them: its DSN (without database)."""
    return pgbouncer[0]


@pytest.fixture(scope="module")
def bouncer_log(pgbouncer: tuple[str, Path]) -> Path:
    """That PgBouncer's log file."""
    return pgbouncer[1]


@pytest.fixture(scope="module")
def pgbouncer(pg_server_dsn: str) -> Iterator[tuple[str, Path]]:
    server = urlsplit(pg_server_dsn)
    workdir = Path(tempfile.mkdtemp(prefix="tenantmig-pgbouncer-"))
    port = _free_port()
    ini = workdir / "pgbouncer.ini"
    ini.write_text(
        "[databases]\n"
        f"* = host={server.hostname} port={server.port}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\n"
        f"unix_socket_dir = {workdir}\n"
        "auth_type = trust\n"
        f"auth_file = {workdir}/users.txt\n"
        "pool_mode = transaction\n"
        "default_pool_size = 3\n"
        "max_client_conn = 200\n"
        f"logfile = {workdir}/pgbouncer.log\n"
        "ignore_startup_parameters = extra_float_digits\n"
    )
    user_name = server.username or "postgres"
    (workdir / "users.txt").write_text(f'"{user_name}" ""\n')
    command = [PGBOUNCER, str(ini)]
    if os.geteuid() == 0:  # pgbouncer refuses to run as root
        user = pwd.getpwnam("postgres")
        os.chown(workdir, user.pw_uid, user.pw_gid)
        for f in (ini, workdir / "users.txt"):
            os.chown(f, user.pw_uid, user.pw_gid)
        command = ["runuser", "-u", "postgres", "--", *command]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    log = workdir / "pgbouncer.log"
                    output = log.read_text() if log.exists() else ""
                    raise RuntimeError(f"pgbouncer did not start: {output}") from None
                time.sleep(0.05)
        yield f"postgresql://{user_name}@127.0.0.1:{port}", workdir / "pgbouncer.log"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        shutil.rmtree(workdir, ignore_errors=True)


def through(bouncer: str, dsn: str) -> str:
    return f"{bouncer}{urlsplit(dsn).path}"


async def test_two_runners_through_pgbouncer_apply_each_version_once(
    dsn: str, bouncer: str, make_migrations: Any
) -> None:
    folder = make_migrations(MIGRATIONS)
    tenants = [f"tenant_{i:02d}" for i in range(30)] + ["tenant_O'Brien \"x\""]
    await create_tenants(dsn, tenants)
    pooled = through(bouncer, dsn)
    a = tenantmig.Engine(pooled, migrations=folder, concurrency=4, pgbouncer=True)
    b = tenantmig.Engine(pooled, migrations=folder, concurrency=4, pgbouncer=True)
    try:
        ra, rb = await asyncio.gather(a.upgrade(), b.upgrade())
    finally:
        await a.close()
        await b.close()
    assert ra.ok and rb.ok, [(o.tenant, o.message) for o in (*ra.failed, *rb.failed)]
    await assert_exactly_once(dsn, tenants)
    # Nothing leaked into the shared server connections: a new client through the same
    # bouncer sees the default search_path and lock_timeout, and no advisory lock is held.
    conn = await asyncpg.connect(pooled, statement_cache_size=0)
    try:
        assert await conn.fetchval("SHOW search_path") == '"$user", public'
        assert await conn.fetchval("SHOW lock_timeout") == "0"
    finally:
        await conn.close()
    assert await fetchval(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0


async def test_cli_through_pgbouncer_and_refusal_of_session_migrations(
    dsn: str, bouncer: str, make_migrations: Any, tmp_path: Path
) -> None:
    folder = make_migrations(MIGRATIONS)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTMIG_")}
    pooled = through(bouncer, dsn)
    up = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tenantmig", "up", "--pgbouncer", "--dsn", pooled,
         "--migrations", str(folder)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert up.returncode == 0, up.stdout + up.stderr
    await assert_exactly_once(dsn, ["tenant_a", "tenant_b"])

    (folder / "V5__index.sql").write_text(
        "-- tenantmig:no-transaction\n"
        "CREATE INDEX CONCURRENTLY IF NOT EXISTS more_id_idx ON {{schema}}.more (id);\n"
    )
    (folder / "V10__batches.py").write_text(
        "transactional = False\n\nasync def up(ctx):\n    await ctx.execute('SELECT 1')\n"
    )
    refused = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tenantmig", "up", "--pgbouncer", "--dsn", pooled,
         "--migrations", str(folder)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert refused.returncode == 2, refused.stdout + refused.stderr
    assert "direct connection" in refused.stderr
    assert "V5__index.sql, V10__batches.py" in refused.stderr  # in version order
    assert await fetchval(dsn, "SELECT count(*) FROM tenant_a.tenantmig_history") == 4


async def test_the_cli_says_goodbye_on_every_connection_it_leaves(
    dsn: str, bouncer: str, bouncer_log: Path, make_migrations: Any, tmp_path: Path
) -> None:
    """The command line does not wait for the server to end its connections when it
    exits, but each one still ends with the protocol's goodbye: PgBouncer logs a close
    request for each, never an unexpected end of file."""
    folder = make_migrations(MIGRATIONS)
    await create_tenants(dsn, ["tenant_bye_a", "tenant_bye_b", "tenant_bye_c"])
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTMIG_")}
    seen = await asyncio.to_thread(lambda: bouncer_log.stat().st_size)
    up = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "tenantmig", "up", "--pgbouncer", "--concurrency", "3",
         "--dsn", through(bouncer, dsn), "--migrations", str(folder)],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120,
    )
    assert up.returncode == 0, up.stdout + up.stderr

    reasons = await asyncio.to_thread(_client_close_reasons, bouncer_log, seen, 3)
    assert len(reasons) >= 3 and set(reasons) == {"client close request"}, reasons


def _client_close_reasons(log: Path, offset: int, expected: int) -> list[str]:
    """Why PgBouncer closed client connections, from *offset* of its log on: waits (up to
    10 s) until *expected* closes are logged, since it logs them as it reads them."""
    deadline = time.monotonic() + 10
    while True:
        with log.open(encoding="utf-8", errors="replace") as f:
            f.seek(offset)
            reasons = [line.split("closing because: ", 1)[1].split(" (age")[0]
                       for line in f if "closing because: " in line and " C-" in line]
        if len(reasons) >= expected or time.monotonic() > deadline:
            return reasons
        time.sleep(0.05)


async def test_an_unqualified_history_through_pgbouncer_lands_in_each_tenant(
    dsn: str, bouncer: str, make_migrations: Any
) -> None:
    """Transaction pooling keeps no session: the tenant's search_path is set by the apply
    procedure for each migration's transaction, and never reaches the next client."""
    from catalog import schema_catalog
    from test_search_path import HISTORY, check_tenant

    files = {name: sql for name, sql in HISTORY.items() if "no-transaction" not in sql}
    files["V5__posts_score_index.sql"] = (
        "-- tenantmig:allow index-not-concurrent test: two rows, created in V1\n"
        "CREATE INDEX posts_score_idx ON posts (score);\n")
    folder = make_migrations(files)
    tenants = ["tenant_a", "tenant_b", "tenant_O'Brien \"x\""]
    await create_tenants(dsn, tenants)
    async with tenantmig.Engine(through(bouncer, dsn), migrations=folder, concurrency=2,
                                pgbouncer=True) as engine:
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    conn = await asyncpg.connect(dsn)
    try:
        catalogs = [await schema_catalog(conn, t) for t in tenants]
        assert await conn.fetchval("SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                                   "ON n.oid = c.relnamespace WHERE n.nspname = 'public'") == 0
    finally:
        await conn.close()
    assert catalogs[0] == catalogs[1] == catalogs[2]
    for tenant in tenants:
        await check_tenant(dsn, tenant)
    # A client of the same PgBouncer pool sees the server's default path, not a tenant's.
    probe = await asyncpg.connect(through(bouncer, dsn), statement_cache_size=0)
    try:
        assert await probe.fetchval("SHOW search_path") == '"$user", public'
    finally:
        await probe.close()
