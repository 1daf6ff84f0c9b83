"""A throwaway local PostgreSQL cluster.

Used by ``tenantmig demo``, the test suite and the benchmark. Everything here is synchronous
(subprocess based). A :class:`LocalCluster` lives in a fresh temporary directory that holds the
data directory, the unix socket and the server log; :meth:`LocalCluster.stop` shuts the server
down and removes the directory.

PostgreSQL refuses to run as root, so when we are root every ``initdb``/``pg_ctl`` command runs
as the ``postgres`` OS user (``runuser -u postgres --``) and the temporary directory is owned by
that user.
"""

from __future__ import annotations

import atexit
import contextlib
import getpass
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from urllib.parse import quote

import structlog

from ._pgserver import (
    ROOT_RUN_AS,
    ClusterError,
    find_bindir,
    make_basedir,
    run_program,
    write_owned,
)

__all__ = ["ClusterError", "LocalCluster", "find_bindir"]

log = structlog.get_logger(__name__)

_START_ATTEMPTS = 3
_PG_CTL_WAIT = "120"  # seconds pg_ctl -w waits for start/stop
_LOG_TAIL_LINES = 20
_CONF_FILE = "tenantmig.conf"
_LOG_FILE = "postgres.log"
_SETTING_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_PORT_IN_USE = ("Address already in use", "could not create any TCP/IP sockets")

_HBA = """\
# Written by tenantmig: a throwaway cluster reachable only from this machine.
local   all             all                                     trust
host    all             all             127.0.0.1/32            trust
host    all             all             ::1/128                 trust
local   replication     all                                     trust
host    replication     all             127.0.0.1/32            trust
host    replication     all             ::1/128                 trust
"""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def _clean_env() -> dict[str, str]:
    """The environment for initdb/pg_ctl: no libpq PG* variables, C locale."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env["LC_ALL"] = "C"
    env["LANG"] = "C"
    return env


def _conf_value(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "''") + "'"


def _tail(text: str, lines: int = _LOG_TAIL_LINES) -> str:
    kept = [line for line in text.strip().splitlines() if line.strip()][-lines:]
    if not kept:
        return "    (no output)"
    return "\n".join("    " + line for line in kept)


class LocalCluster:
    """A throwaway PostgreSQL cluster in a temporary directory, listening on 127.0.0.1.

    Usable as a context manager (start on enter, stop on exit). Unless ``durable`` is true the
    server runs with ``fsync``, ``synchronous_commit`` and ``full_page_writes`` off.
    """

    def __init__(
        self,
        *,
        settings: Mapping[str, str] | None = None,
        max_connections: int = 300,
        durable: bool = False,
    ) -> None:
        self.bindir: Path = find_bindir()
        self.max_connections = max_connections
        self.durable = durable
        self.settings: dict[str, str] = dict(settings or {})
        for name in self.settings:
            if not _SETTING_NAME.match(name):
                raise ClusterError(f"invalid PostgreSQL setting name: {name!r}")
        self._as_root = os.geteuid() == 0
        if self._as_root:
            try:
                pw = pwd.getpwnam(ROOT_RUN_AS)
            except KeyError:
                raise ClusterError(
                    f"running as root but there is no {ROOT_RUN_AS!r} OS user to run "
                    "the PostgreSQL server as"
                ) from None
            if shutil.which("runuser") is None:
                raise ClusterError("running as root but `runuser` is not on PATH")
            self.user = ROOT_RUN_AS
            self._uid: int | None = pw.pw_uid
            self._gid: int | None = pw.pw_gid
        else:
            self.user = getpass.getuser()
            self._uid = None
            self._gid = None
        self._basedir: Path | None = None
        self._port: int | None = None
        self._running = False
        self._lock = threading.RLock()

    # -- public properties -------------------------------------------------------------------

    @property
    def basedir(self) -> Path:
        """The temporary directory (data dir, socket dir, log file)."""
        if self._basedir is None:
            raise ClusterError("cluster not started")
        return self._basedir

    @property
    def datadir(self) -> Path:
        return self.basedir / "data"

    @property
    def logfile(self) -> Path:
        return self.basedir / _LOG_FILE

    @property
    def port(self) -> int:
        if self._port is None:
            raise ClusterError("cluster not started")
        return self._port

    @property
    def running(self) -> bool:
        return self._running

    @property
    def dsn(self) -> str:
        """DSN of the ``postgres`` database, e.g. ``postgresql://postgres@127.0.0.1:5555/postgres``."""
        return self.dsn_for("postgres")

    def dsn_for(self, dbname: str) -> str:
        user = quote(self.user, safe="")
        return f"postgresql://{user}@127.0.0.1:{self.port}/{quote(dbname, safe='')}"

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Create a fresh cluster in a new temporary directory and start it."""
        with self._lock:
            if self._basedir is not None:
                raise ClusterError("cluster already started")
            atexit.register(self.stop)
            try:
                self._basedir = self._make_basedir()
                self._initdb()
                self._start_server()
            except BaseException:
                self.stop()
                raise
            log.debug("local postgres started", port=self._port, datadir=str(self.datadir))

    def stop(self) -> None:
        """Stop the server (immediate shutdown) and remove the temporary directory.

        Idempotent; never raises because the server is already down.
        """
        with self._lock:
            atexit.unregister(self.stop)
            basedir = self._basedir
            if basedir is None:
                return
            try:
                if (basedir / "data" / "postmaster.pid").exists():
                    self._shutdown_server()
            finally:
                self._running = False
                self._basedir = None
                self._port = None
                shutil.rmtree(basedir, ignore_errors=True)
            log.debug("local postgres stopped", datadir=str(basedir / "data"))

    def restart(self, mode: str = "fast") -> None:
        """Restart the server (``pg_ctl restart -m MODE -w``): same port, same data."""
        with self._lock:
            proc = self.pg_ctl("restart", "-m", mode, "-w", "-t", _PG_CTL_WAIT)
            if proc.returncode != 0:
                self._running = False
                raise ClusterError(
                    f"pg_ctl restart -m {mode} failed (exit {proc.returncode}); "
                    f"server log tail:\n{self._log_tail()}"
                )
            self._running = True

    def pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Run ``pg_ctl -D DATADIR -l LOGFILE ARGS...`` as the server's OS user.

        ``-l`` is always passed so a (re)started server never writes to our pipes.
        Does not raise on a non-zero exit status; check ``returncode``.
        """
        cmd = [
            str(self.bindir / "pg_ctl"),
            "-D",
            str(self.datadir),
            "-l",
            str(self.logfile),
            *args,
        ]
        return self._run(cmd)

    def __enter__(self) -> LocalCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = f"port={self._port} basedir={self._basedir}" if self._basedir else "stopped"
        return f"<LocalCluster {where}>"

    # -- internals ---------------------------------------------------------------------------

    def _run(self, cmd: Sequence[str]) -> subprocess.CompletedProcess[str]:
        cwd = self._basedir if self._basedir is not None and self._basedir.exists() else None
        return run_program(cmd, as_server_user=self._as_root, cwd=cwd, env=_clean_env())

    def _make_basedir(self) -> Path:
        return make_basedir(self._uid, self._gid)

    def _write(self, path: Path, text: str, *, append: bool = False) -> None:
        write_owned(path, text, self._uid, self._gid, append=append)

    def _initdb(self) -> None:
        cmd = [
            str(self.bindir / "initdb"),
            "-D",
            str(self.datadir),
            "-A",
            "trust",
            "-U",
            self.user,
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        ]
        proc = self._run(cmd)
        if proc.returncode != 0:
            raise ClusterError(
                f"initdb failed (exit {proc.returncode}):\n{_tail(proc.stdout + proc.stderr)}"
            )
        self._write(self.datadir / "pg_hba.conf", _HBA)
        self._write(
            self.datadir / "postgresql.conf",
            f"\n# Added by tenantmig\ninclude = '{_CONF_FILE}'\n",
            append=True,
        )

    def _conf_settings(self, port: int) -> dict[str, str]:
        conf = {
            "port": str(port),
            "listen_addresses": "127.0.0.1",
            "unix_socket_directories": str(self.basedir),
            "max_connections": str(self.max_connections),
            "shared_buffers": "128MB",
            "logging_collector": "off",
        }
        if not self.durable:
            conf.update(fsync="off", synchronous_commit="off", full_page_writes="off")
        conf.update(self.settings)
        return conf

    def _write_conf(self, port: int) -> None:
        lines = [f"{k} = {_conf_value(v)}" for k, v in self._conf_settings(port).items()]
        self._write(self.datadir / _CONF_FILE, "\n".join(lines) + "\n")

    def _start_server(self) -> None:
        for attempt in range(1, _START_ATTEMPTS + 1):
            port = _free_port()
            self._write_conf(port)
            log_size = self.logfile.stat().st_size if self.logfile.exists() else 0
            proc = self.pg_ctl("start", "-w", "-t", _PG_CTL_WAIT)
            if proc.returncode == 0:
                self._port = port
                self._running = True
                return
            new_log = self._read_log()[log_size:]
            if any(m in new_log for m in _PORT_IN_USE) and attempt < _START_ATTEMPTS:
                log.debug("port taken, retrying postgres start", port=port, attempt=attempt)
                continue
            output = (proc.stdout + proc.stderr).strip()
            raise ClusterError(
                f"could not start PostgreSQL on 127.0.0.1:{port} (pg_ctl exit "
                f"{proc.returncode}{': ' + output.splitlines()[-1] if output else ''}); "
                f"server log tail:\n{_tail(new_log)}"
            )
        raise AssertionError("unreachable")  # pragma: no cover

    def _read_log(self) -> str:
        try:
            return self.logfile.read_bytes().decode("utf-8", errors="replace")
        except OSError:
            return ""

    def _log_tail(self) -> str:
        return _tail(self._read_log())

    def _postmaster_pid(self) -> int | None:
        try:
            first = (self.datadir / "postmaster.pid").read_text().splitlines()[0]
            return int(first.strip())
        except (OSError, IndexError, ValueError):
            return None

    def _is_our_postmaster(self, pid: int) -> bool:
        """Guard against a stale pid file whose pid now belongs to an unrelated process."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            return False
        return str(self.datadir) in cmdline

    def _shutdown_server(self) -> None:
        try:
            proc = self.pg_ctl("stop", "-m", "immediate", "-w", "-t", _PG_CTL_WAIT)
        except ClusterError:
            proc = None
        if proc is not None and proc.returncode == 0:
            return
        # pg_ctl failed: usually the server is simply not running (stale pid file). If the
        # postmaster is still alive, ask it for an immediate shutdown ourselves.
        pid = self._postmaster_pid()
        if pid is None or pid <= 0 or not self._is_our_postmaster(pid):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGQUIT)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                os.kill(pid, 0)
                time.sleep(0.05)
            os.kill(pid, signal.SIGKILL)
