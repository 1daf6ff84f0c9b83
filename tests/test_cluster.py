"""Tests of the throwaway local cluster (tenantmig._cluster)."""

from __future__ import annotations

import os
import socket
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from helpers import fetchval

from tenantmig import _cluster
from tenantmig._cluster import ClusterError, LocalCluster, find_bindir

pytestmark = pytest.mark.skipif(
    bool(os.environ.get("TENANTMIG_TEST_DSN")),
    reason="TENANTMIG_TEST_DSN is set: tests of the local throwaway cluster are skipped",
)


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    """A cluster of its own: these tests restart it, which must not disturb other tests."""
    with LocalCluster(max_connections=20, settings={"application_name": "it's quoted"}) as c:
        yield c


def test_find_bindir() -> None:
    bindir = find_bindir()
    assert (bindir / "initdb").is_file()
    assert (bindir / "pg_ctl").is_file()


def test_find_bindir_env_override(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    default = find_bindir()
    monkeypatch.setenv("TENANTMIG_PG_BINDIR", str(tmp_path))
    with pytest.raises(ClusterError, match="TENANTMIG_PG_BINDIR"):
        find_bindir()
    monkeypatch.setenv("TENANTMIG_PG_BINDIR", str(default))
    assert find_bindir() == default


async def test_accepts_connections(cluster: LocalCluster) -> None:
    assert cluster.dsn == f"postgresql://{cluster.user}@127.0.0.1:{cluster.port}/postgres"
    assert await fetchval(cluster.dsn, "SELECT 1") == 1


async def test_settings_applied(cluster: LocalCluster) -> None:
    assert await fetchval(cluster.dsn, "SHOW fsync") == "off"
    assert await fetchval(cluster.dsn, "SHOW synchronous_commit") == "off"
    assert await fetchval(cluster.dsn, "SHOW full_page_writes") == "off"
    assert await fetchval(cluster.dsn, "SHOW listen_addresses") == "127.0.0.1"
    assert await fetchval(cluster.dsn, "SHOW max_connections") == "20"
    assert await fetchval(cluster.dsn, "SHOW unix_socket_directories") == str(cluster.basedir)
    assert await fetchval(cluster.dsn, "SHOW application_name") != ""  # client overrides it
    conf = (cluster.datadir / "tenantmig.conf").read_text()
    assert "application_name = 'it''s quoted'" in conf


async def test_dsn_for(cluster: LocalCluster) -> None:
    conn = await asyncpg.connect(cluster.dsn)
    try:
        await conn.execute('CREATE DATABASE "odd db"')
    finally:
        await conn.close()
    assert await fetchval(cluster.dsn_for("odd db"), "SELECT current_database()") == "odd db"


async def test_restart_keeps_port_and_data(cluster: LocalCluster) -> None:
    port = cluster.port
    conn = await asyncpg.connect(cluster.dsn)
    try:
        await conn.execute("CREATE TABLE survivor (id int); INSERT INTO survivor VALUES (42)")
    finally:
        await conn.close()

    cluster.restart()
    assert cluster.port == port
    assert await fetchval(cluster.dsn, "SELECT id FROM survivor") == 42

    cluster.restart("immediate")  # crash-like restart: committed data must survive too
    assert cluster.port == port
    assert await fetchval(cluster.dsn, "SELECT id FROM survivor") == 42


async def test_restart_drops_existing_connections(cluster: LocalCluster) -> None:
    conn = await asyncpg.connect(cluster.dsn)
    try:
        cluster.restart("fast")
        with pytest.raises((asyncpg.PostgresError, ConnectionError, OSError)):
            await conn.fetchval("SELECT 1")
    finally:
        conn.terminate()


def test_stop_removes_tempdir_and_is_idempotent() -> None:
    c = LocalCluster(max_connections=10)
    c.start()
    basedir = c.basedir
    pid_line = (c.datadir / "postmaster.pid").read_text().splitlines()[0]
    assert basedir.is_dir()
    c.stop()
    assert not basedir.exists()
    assert not Path(f"/proc/{int(pid_line)}/cmdline").exists() or not _alive(int(pid_line))
    c.stop()  # second stop is a no-op
    with pytest.raises(ClusterError):
        _ = c.port


def test_context_manager_and_stop_after_server_died() -> None:
    with LocalCluster(max_connections=10) as c:
        basedir = c.basedir
        # Server already gone (e.g. killed by a fault test): stop() must not raise.
        assert c.pg_ctl("stop", "-m", "immediate", "-w").returncode == 0
        c.stop()
        assert not basedir.exists()
    assert not basedir.exists()


def test_start_retries_when_port_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        taken = blocker.getsockname()[1]
        ports = iter([taken])
        real_free_port = _cluster._free_port
        monkeypatch.setattr(_cluster, "_free_port", lambda: next(ports, None) or real_free_port())
        with LocalCluster(max_connections=10) as c:
            assert c.port != taken
            assert "Address already in use" in c.logfile.read_text()


def test_failed_start_is_reported_and_cleaned_up(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Path] = []
    real_mkdtemp = tempfile.mkdtemp

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        path = str(real_mkdtemp(*args, **kwargs))
        made.append(Path(path))
        return path

    monkeypatch.setattr(tempfile, "mkdtemp", mkdtemp)
    c = LocalCluster(max_connections=10, settings={"no_such_setting": "1"})
    with pytest.raises(ClusterError, match="could not start PostgreSQL") as info:
        c.start()
    assert "no_such_setting" in str(info.value)  # the server log tail is included
    assert made and not made[0].exists()
    c.stop()  # harmless after a failed start


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A reaped-later zombie counts as dead.
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"
