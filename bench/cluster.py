"""The bench's PostgreSQL: a throwaway cluster, the machine's description, CPU accounting.

The cluster is started here with ``initdb``/``pg_ctl`` rather than with tenantmig's own
test helper, so the bench depends on tenantmig's public API only (the package's internals
are free to move).
"""

from __future__ import annotations

import contextlib
import os
import platform
import pwd
import re
import resource
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

# The same for both contenders; a throwaway cluster does not need durability, and its
# cost would be noise here (fsync on a shared disk).
SETTINGS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "300",
    "listen_addresses": "127.0.0.1",
}
_HBA = "local all all trust\nhost all all 127.0.0.1/32 trust\nhost all all ::1/128 trust\n"


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def dsn_with_database(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise SystemExit(f"--dsn must be a postgresql:// URL, got {dsn!r}")
    return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))


def find_bindir() -> Path:
    """$TENANTMIG_PG_BINDIR, else ``pg_config --bindir``, else the newest /usr/lib/postgresql."""
    needed = ("initdb", "pg_ctl", "postgres")

    def usable(path: Path) -> bool:
        return all(os.access(path / n, os.X_OK) for n in needed)

    override = os.environ.get("TENANTMIG_PG_BINDIR")
    if override and usable(Path(override)):
        return Path(override)
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and usable(Path(out.stdout.strip())):
            return Path(out.stdout.strip())
    found = [p for p in Path("/usr/lib/postgresql").glob("*/bin") if usable(p)]
    if not found:
        raise SystemExit("no PostgreSQL server binaries (initdb, pg_ctl, postgres) found")
    return max(found, key=lambda p: [int(x) for x in re.findall(r"\d+", p.parent.name)])


class Cluster:
    """A throwaway cluster in a fresh directory under *tmpdir*, on a free local port.

    PostgreSQL refuses to run as root: as root, the server runs as the ``postgres`` user.
    """

    def __init__(self, tmpdir: str | None) -> None:
        self.bindir = find_bindir()
        self.basedir = Path(tempfile.mkdtemp(prefix="tenantmig-bench-pg-", dir=tmpdir))
        self.datadir = self.basedir / "data"
        self.logfile = self.basedir / "postgres.log"
        self._runas: list[str] = []
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(self.basedir, pw.pw_uid, pw.pw_gid)
            self._runas = ["runuser", "-u", "postgres", "--"]
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port: int = sock.getsockname()[1]
        self.dsn = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *cmd: str) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env.update(LC_ALL="C", LANG="C")
        proc = subprocess.run(
            [*self._runas, *cmd],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            stdin=subprocess.DEVNULL,
            timeout=300,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{cmd[0]} failed: {(proc.stdout + proc.stderr)[-2000:]}")

    def start(self) -> None:
        self._run(
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-U",
            "postgres",
            "-A",
            "trust",
            "--no-sync",
        )
        (self.datadir / "pg_hba.conf").write_text(_HBA)
        conf = dict(SETTINGS, port=str(self.port), unix_socket_directories=str(self.basedir))
        with (self.datadir / "postgresql.conf").open("a") as f:
            f.writelines(f"{k} = '{v}'\n" for k, v in conf.items())
        pg_ctl = str(self.bindir / "pg_ctl")
        self._run(pg_ctl, "-D", str(self.datadir), "-l", str(self.logfile), "start", "-w")

    def stop(self) -> None:
        with contextlib.suppress(SystemExit, subprocess.SubprocessError, OSError):
            pg_ctl = str(self.bindir / "pg_ctl")
            self._run(pg_ctl, "-D", str(self.datadir), "stop", "-m", "immediate", "-w")
        shutil.rmtree(self.basedir, ignore_errors=True)


def filesystem_type(path: Path) -> str:
    """The type of the file system holding *path* (from /proc/mounts), e.g. tmpfs, ext4."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                mount = fields[1]
                inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    return kind


def cluster_tmpdir(requested: str | None) -> str | None:
    """Default: tmpfs. On ext4, creating files soon after many were deleted (a dropped
    database) is several times slower at random (ext4_create -> recently_deleted), which
    swamps the difference being measured; every CREATE TABLE/INDEX creates files."""
    if requested:
        return requested
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and filesystem_type(shm) == "tmpfs":
        return str(shm)
    return None


# --- machine ------------------------------------------------------------------------------


def _ram_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


async def machine_info(admin_dsn: str, storage: str) -> dict[str, Any]:
    """What a figure needs next to it: cores, CPU, PostgreSQL, where the cluster lives."""
    conn = await asyncpg.connect(admin_dsn)
    try:
        pg_version = await conn.fetchval("SELECT version()")
        settings = {
            r["name"]: r["setting"]
            for r in await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                ["fsync", "synchronous_commit", "full_page_writes", "shared_buffers",
                 "max_connections"],
            )
        }
    finally:
        await conn.close()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu_model": _cpu_model(),
        "ram_gib": _ram_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "asyncpg": asyncpg.__version__,
        "postgres": pg_version,
        "postgres_settings": settings,
        "cluster_storage": storage,
    }


def describe_machine(m: dict[str, Any]) -> str:
    return (
        f"machine: {m['nproc']} cores ({m['cpu_model']}), {m['ram_gib']} GiB RAM, "
        f"Python {m['python']}, {m['postgres'].split(' on ')[0]}, "
        f"cluster storage {m['cluster_storage']}"
    )


async def exec_admin(admin_dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def drop_database(admin_dsn: str, name: str) -> None:
    await exec_admin(admin_dsn, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


async def checkpoint(admin_dsn: str) -> bool:
    """Flush dirty buffers so each timed phase starts from the same state."""
    try:
        await exec_admin(admin_dsn, "CHECKPOINT")
    except asyncpg.PostgresError:
        return False
    return True


# --- CPU accounting -----------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    client: float
    server: float | None
    server_processes: int


class CpuMeter:
    """CPU seconds of this process (+ children) and of a local server's processes.

    Wall time on a busy or small machine is noisy; CPU seconds per side are steadier and
    show where the work is. The server side is the postmaster's own and reaped children's
    time plus that of its live children (backends, walwriter, ...), read from /proc.
    """

    def __init__(self, datadir: Path | None) -> None:
        self._pidfile = datadir / "postmaster.pid" if datadir is not None else None
        self._tick = os.sysconf("SC_CLK_TCK")

    def _stat(self, pid: int) -> list[str] | None:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return text.rsplit(")", 1)[1].split()  # fields from 3 (state) on

    def _children(self, pid: int) -> list[int]:
        try:
            return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def _server(self) -> tuple[float | None, int]:
        if self._pidfile is None:
            return None, 0
        try:
            pid = int(self._pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None, 0
        fields = self._stat(pid)
        if fields is None:
            return None, 0
        # utime, stime, cutime, cstime are fields 14-17, i.e. 11-14 counted from field 3.
        ticks = sum(int(f) for f in fields[11:15])
        children = self._children(pid)
        for child in children:
            child_fields = self._stat(child)
            if child_fields is not None:
                ticks += int(child_fields[11]) + int(child_fields[12])
        return ticks / self._tick, len(children)

    def snapshot(self) -> CpuSnapshot:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        server, processes = self._server()
        client = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        return CpuSnapshot(client, server, processes)

    def settle(self, before: CpuSnapshot, timeout: float = 3.0) -> None:
        """Wait until the backends of the phase have exited (and been reaped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server()[1] <= before.server_processes:
                return
            time.sleep(0.02)

    @staticmethod
    def delta(before: CpuSnapshot, after: CpuSnapshot) -> tuple[float, float | None]:
        server = (
            after.server - before.server
            if after.server is not None and before.server is not None
            else None
        )
        return after.client - before.client, server
