"""Fault injection for the tests in this folder: tenants and migrations whose every effect can
be counted, the state each tenant ends in, a killer of backends, a holder of table locks, a
proxy that delays the closing of connections, and the command line run in the background.

Imported by the tests as ``from faultkit import ...``; the fixtures are in ``conftest.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest
from helpers import cli_env, fetchval, names, quote_ident, wait_until

# --- migrations and tenants -------------------------------------------------------------------


SCHEMA = "{{schema}}"


def migration_files(count: int, *, sleep: float = 0.0,
                    extra: dict[int, str] | None = None) -> dict[str, str]:
    """``count`` migrations; version v creates table t<v> and inserts v into ``applied``.

    ``extra[v]`` is more SQL for version v (e.g. a constraint some tenants' data violates).
    """
    files: dict[str, str] = {}
    for v in range(1, count + 1):
        lines = []
        if sleep:
            lines.append(f"SELECT pg_sleep({sleep});")
        lines.append(f"CREATE TABLE {SCHEMA}.t{v} (id int);")
        if extra and v in extra:
            lines.append(extra[v])
        lines.append(f"INSERT INTO {SCHEMA}.applied (v) VALUES ({v});")
        files[f"V{v}__step_{v}.sql"] = "\n".join(lines) + "\n"
    return files


TOUCH_ITEMS = f"ALTER TABLE {SCHEMA}.items ADD COLUMN note text;"


def narrow_names(n: int) -> list[str]:
    """``n`` tenant names with as few digits as ``n`` needs: ``tenant_00`` .. ``tenant_29``."""
    return names(n, width=len(str(n - 1)))


async def create_item_tenants(dsn: str, tenants: Sequence[str], *,
                              bad: Sequence[str] = ()) -> None:
    """Schemas with ``items(id, qty)`` and ``applied(v)``; the ``bad`` ones hold a row with
    ``qty = -1`` (violates the CHECK that QTY_CHECK adds)."""
    conn = await asyncpg.connect(dsn)
    try:
        for start in range(0, len(tenants), 100):
            statements = []
            for t in tenants[start:start + 100]:
                s = quote_ident(t)
                qty = -1 if t in bad else 1
                statements += [
                    f"CREATE SCHEMA {s};",
                    f"CREATE TABLE {s}.items (id int PRIMARY KEY, qty int NOT NULL);",
                    f"INSERT INTO {s}.items VALUES (1, 5), (2, {qty});",
                    f"CREATE TABLE {s}.applied (v int NOT NULL);",
                ]
            async with conn.transaction():
                await conn.execute("\n".join(statements))
    finally:
        await conn.close()


# --- reading the database ---------------------------------------------------------------------


@dataclass
class TenantState:
    """What one tenant holds: history rows, migration side effects."""

    history: list[tuple[int, str]] = field(default_factory=list)  # (version, run_id)
    applied_at: list[datetime] = field(default_factory=list)  # of each history row
    applied: list[int] = field(default_factory=list)  # rows of <tenant>.applied, sorted
    tables: list[int] = field(default_factory=list)  # versions v with a table t<v>, sorted
    has_history_table: bool = False

    @property
    def versions(self) -> list[int]:
        return sorted(v for v, _ in self.history)

    @property
    def version(self) -> int | None:
        return max(self.versions) if self.history else None


async def tenant_states(dsn: str, tenants: Sequence[str]) -> dict[str, TenantState]:
    states = {t: TenantState() for t in tenants}
    conn = await asyncpg.connect(dsn)
    try:
        for r in await conn.fetch(
            "SELECT n.nspname, c.relname FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = ANY($1::text[]) AND c.relkind = 'r'", list(tenants),
        ):
            match = re.fullmatch(r"t(\d+)", r["relname"])
            if match:
                states[r["nspname"]].tables.append(int(match.group(1)))
            elif r["relname"] == "tenantmig_history":
                states[r["nspname"]].has_history_table = True
        for t in tenants:
            s = quote_ident(t)
            states[t].tables.sort()
            states[t].applied = [r["v"] for r in
                                 await conn.fetch(f"SELECT v FROM {s}.applied ORDER BY v")]
            if states[t].has_history_table:
                rows = await conn.fetch(f"SELECT version, run_id, applied_at "
                                        f"FROM {s}.tenantmig_history ORDER BY version")
                states[t].history = [(r["version"], r["run_id"]) for r in rows]
                states[t].applied_at = [r["applied_at"] for r in rows]
    finally:
        await conn.close()
    return states


def assert_consistent(states: dict[str, TenantState]) -> None:
    """No tenant is half-migrated, nothing was applied twice: each version in the history is
    there once, and exactly those versions' side effects exist, once each."""
    for t, st in states.items():
        versions = st.versions
        assert len(versions) == len(set(versions)), (t, st)
        assert st.applied == versions, (t, st)
        assert st.tables == versions, (t, st)


def assert_all_at_head(states: dict[str, TenantState], head: int) -> None:
    assert_consistent(states)
    behind = {t: st.versions for t, st in states.items() if st.versions != list(range(1, head + 1))}
    assert not behind, behind


def by_status(rows: dict[str, asyncpg.Record]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for t, r in rows.items():
        out.setdefault(r["status"], set()).add(t)
    return out


async def tenantmig_backends(dsn: str) -> int:
    return int(await fetchval(
        dsn, "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
        "AND application_name = 'tenantmig' AND pid <> pg_backend_pid()"))


async def wait_no_backends(dsn: str, within: float = 10.0) -> None:
    """Until no server backend of a runner (killed or not) is left in this database."""
    async def none_left() -> bool:
        return await tenantmig_backends(dsn) == 0

    await wait_until(none_left, within=within, what="tenantmig backends to go away",
                     every=0.05)


# --- faults -----------------------------------------------------------------------------------


class BackendKiller:
    """Every ``interval`` seconds, ``pg_terminate_backend`` one random backend of a runner
    (``application_name = 'tenantmig'``) in this database, for at most ``duration`` seconds.
    Use ``async with``; it always stops on exit."""

    def __init__(self, dsn: str, *, interval: float = 0.05, duration: float = 8.0) -> None:
        self.dsn = dsn
        self.interval = interval
        self.duration = duration
        self.killed = 0
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        conn = await asyncpg.connect(self.dsn, server_settings={"application_name": "killer"})
        try:
            deadline = time.monotonic() + self.duration
            while not self._stop.is_set() and time.monotonic() < deadline:
                killed = await conn.fetchval(
                    "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM ("
                    "  SELECT pid FROM pg_stat_activity WHERE datname = current_database()"
                    "  AND application_name = 'tenantmig' AND pid <> pg_backend_pid()"
                    "  ORDER BY random() LIMIT 1) s")
                self.killed += int(killed)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.interval)
        finally:
            await conn.close()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.wait_for(self._task, 10)

    async def __aenter__(self) -> BackendKiller:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class LockHolder:
    """Another session holding ``LOCK TABLE ... IN ACCESS EXCLUSIVE MODE``."""

    def __init__(self, conn: asyncpg.Connection, tx: Any, pid: int) -> None:
        self.conn = conn
        self.tx = tx
        self.pid = pid
        self.released_at: datetime | None = None

    async def release(self) -> None:
        if self.released_at is None:
            await self.tx.commit()
            self.released_at = datetime.now(UTC)


@contextlib.asynccontextmanager
async def lock_held(dsn: str, table: str) -> AsyncIterator[LockHolder]:
    conn = await asyncpg.connect(dsn, server_settings={"application_name": "lock-holder"})
    try:
        tx = conn.transaction()
        await tx.start()
        await conn.execute(f"LOCK TABLE {table} IN ACCESS EXCLUSIVE MODE")
        holder = LockHolder(conn, tx, conn.get_server_pid())
        try:
            yield holder
        finally:
            await holder.release()
    finally:
        await conn.close()


TRANSIENT_SQLSTATES = {"55P03", "40P01", "40001", "57P01", "57P02", "57P03", "53300"}


def assert_failures_exhausted_retries(rows: dict[str, asyncpg.Record], retries: int) -> None:
    """Under transient faults a tenant may fail only by running out of retries on a transient
    error: never at once on an error of the client library about its broken connection."""
    for t, r in rows.items():
        if r["status"] == "failed":
            sqlstate = r["sqlstate"] or ""
            what = (t, r["sqlstate"], r["attempts"], r["message"])
            assert sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith("08"), what
            assert r["attempts"] > retries, what


class SlowCloseProxy:
    """A TCP proxy in front of the server: bytes pass at once both ways, but the server's
    closing of a connection reaches the client ``delay`` seconds later, as through a network
    hop or a pooler.

    A backend terminated while idle sends its FATAL message and then closes; between the two
    the client holds a connection that looks open but cannot run anything. On a direct local
    connection that window lasts an event-loop turn or so, and random kills hit it in about
    three runs out of four; through this proxy they hit it in every run."""

    def __init__(self, dsn: str, *, delay: float = 0.2) -> None:
        parts = urlsplit(dsn)
        self._parts = parts
        self._host = parts.hostname or "127.0.0.1"
        self._port = parts.port or 5432
        self.delay = delay
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.dsn = ""

    async def __aenter__(self) -> SlowCloseProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        netloc = self._parts.netloc.rsplit("@", 1)
        host = f"127.0.0.1:{port}"
        self.dsn = urlunsplit(self._parts._replace(
            netloc=f"{netloc[0]}@{host}" if len(netloc) == 2 else host))
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.create_task(self._connection(reader, writer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _connection(self, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(self._host, self._port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pump(reader, up_writer, 0.0),
                             self._pump(up_reader, writer, self.delay))

    @staticmethod
    async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    close_delay: float) -> None:
        try:
            while data := await src.read(65536):
                dst.write(data)
                await dst.drain()
            if close_delay:
                await asyncio.sleep(close_delay)
        except OSError:
            pass
        finally:
            dst.close()


# --- the command line -------------------------------------------------------------------------


class Runner:
    """``python -m tenantmig ARGS`` in the background, output to files."""

    def __init__(self, cwd: Path, *args: Any, name: str = "run") -> None:
        self.out_path = cwd / f"{name}.out"
        self.err_path = cwd / f"{name}.err"
        with self.out_path.open("wb") as out, self.err_path.open("wb") as err:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "tenantmig", *map(str, args)],
                cwd=cwd, env=cli_env(), stdin=subprocess.DEVNULL, stdout=out, stderr=err,
            )

    async def wait(self, within: float = 30.0) -> int:
        try:
            return await asyncio.to_thread(self.proc.wait, within)
        except subprocess.TimeoutExpired:
            self.kill()
            pytest.fail(f"tenantmig did not exit within {within}s\n{self.output()}")

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    @property
    def stdout(self) -> str:
        return self.out_path.read_text(errors="replace")

    def output(self) -> str:
        return (f"exit {self.proc.returncode}\n--- stdout\n{self.stdout}\n--- stderr\n"
                f"{self.err_path.read_text(errors='replace')[-6000:]}")


async def run_tm(cwd: Path, *args: Any, within: float = 30.0) -> tuple[int, str]:
    """Run ``python -m tenantmig ARGS`` to its end: (exit code, its output)."""
    runner = Runner(cwd, *args, name=f"tm-{time.monotonic_ns()}")
    try:
        code = await runner.wait(within)
    finally:
        runner.kill()
    return code, runner.output()


@contextlib.contextmanager
def reaped(*runners: Runner) -> Iterator[None]:
    try:
        yield
    finally:
        for r in runners:
            r.kill()
