"""Ledger: each tenant's outcome written to the control schema as it finishes.

Outcomes are buffered for about ``interval`` seconds and written in one statement,
so a run over 10,000 tenants costs a few hundred writes, not 10,000; a runner killed
mid-run loses at most that much of the ledger, and those tenants' histories
(written in their own transactions) still tell the truth: ``resume`` re-reads them.

The writes, and the heartbeat, go on the workers' connections between two tenants
(:meth:`LedgerWriter.between_tenants`), not on a connection of their own: a backend
connected for the whole run, even an idle one, has to process every catalog change
the others make (PostgreSQL's shared invalidation queue), which at concurrency 8 cost
about 3 % of a run. Only when no tenant finishes for a while (long migrations) does
the writer take a pooled connection, if the pool has one to spare (the pool closes it
again once idle: see the engine).
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any

import anyio
import structlog

from ._retry import Backoff
from ._sql import quote_ident, text_array
from .control import control_exists
from .outcome import TenantOutcome

log = structlog.get_logger("tenantmig")

_FINAL_ATTEMPTS = 5
_FIRST_WAIT = 0.5  # seconds; then 1, 1.5, 2 (see persistently)
_BEAT_TIMEOUT = 2.0
_WRITE_FAILED = "ledger write failed, will retry"
_BEAT_FAILED = "could not record a heartbeat"


def ledger_row(outcome: TenantOutcome) -> LedgerRow:
    return LedgerRow(
        tenant=outcome.tenant,
        status=outcome.status,
        version_before=outcome.version_before,
        version_reached=outcome.version_reached,
        target=outcome.target,
        failing_version=outcome.failing_version,
        sqlstate=outcome.sqlstate,
        message=outcome.message,
        attempts=outcome.attempts,
        started_at=outcome.started_at,
        finished_at=outcome.finished_at,
    )


class LedgerWriter:
    """Buffers outcomes and flushes them periodically and on exit (shielded)."""

    def __init__(self, pool: Any, control_schema: str, run_id: str, *,
                 interval: float = 0.25) -> None:
        self._pool = pool
        self._control_schema = control_schema
        self._run_id = run_id
        self._interval = interval
        self._buffer: list[LedgerRow] = []
        self._lock = anyio.Lock()
        self._tg: anyio.abc.TaskGroup | None = None
        # Nothing written yet: the first tenant to finish writes its row at once.
        self._written_at = -float("inf")
        self._beat_at = self._beat_tried_at = self._pooled_beat_tried_at = time.monotonic()

    def add(self, outcome: TenantOutcome) -> None:
        self._buffer.append(ledger_row(outcome))

    async def flush(self, conn: Any = None, *, wait: float | None = None) -> None:
        """Write the buffered rows, on *conn* or else on a pooled connection (waiting at
        most *wait* seconds for one)."""
        # Shielded: cancelling a write half-way would abandon asyncpg's connection release.
        with anyio.CancelScope(shield=True):
            if conn is not None:
                await self._write(conn)
                return
            # Taken before the lock: waiting for a connection must not stop the workers
            # writing on theirs.
            async with self._pool.acquire(timeout=wait) as pooled:
                await self._write(pooled)

    async def _write(self, conn: Any) -> None:
        async with self._lock:
            rows, self._buffer = self._buffer, []
            if not rows:
                return
            try:
                await write_outcomes(conn, self._control_schema, self._run_id, rows)
            except BaseException:
                self._buffer[:0] = rows
                raise
            self._written_at = time.monotonic()

    async def between_tenants(self, conn: Any) -> None:
        """A worker's connection is free until its next tenant: write what is due on it."""
        if self._lock.locked() or conn.is_in_transaction():
            return
        now = time.monotonic()
        if self._buffer and now - self._written_at >= self._interval:
            await self._try(_WRITE_FAILED, lambda: self.flush(conn))
        if now - self._beat_tried_at >= HEARTBEAT_EVERY:
            self._beat_tried_at = now
            await self._try(_BEAT_FAILED, lambda: self._beat(conn))

    async def _loop(self) -> None:
        """What the workers have not written for a while, because none of them finishes
        a tenant (long migrations): on a pooled connection, if one is free or can be
        opened (the pool closes it again once it has been idle for a moment)."""
        while True:
            await anyio.sleep(self._interval)
            now = time.monotonic()
            pool = self._pool
            if pool.get_idle_size() == 0 and pool.get_size() >= pool.get_max_size():
                continue  # the workers hold every connection: they write as they finish
            if self._buffer and now - self._written_at >= 2 * self._interval:
                await self._try(_WRITE_FAILED, lambda: self.flush(wait=_BEAT_TIMEOUT))
            if (now - self._beat_at >= HEARTBEAT_EVERY + self._interval
                    and now - self._pooled_beat_tried_at >= HEARTBEAT_EVERY):
                # Also when the workers' attempts fail (a migration may have left their
                # sessions unable to write), not only when none of them finishes.
                self._pooled_beat_tried_at = now
                await self._try(_BEAT_FAILED, self._pooled_beat)

    async def _beat(self, conn: Any) -> None:
        # A sign of life even while no tenant finishes (a long backfill): a run silent
        # for long was killed, and status and ledger can say so. Shielded like a flush,
        # but bounded: a hung server must not hold up the run's end or a cancel.
        with anyio.CancelScope(shield=True):
            await heartbeat(conn, self._control_schema, self._run_id, wait=_BEAT_TIMEOUT)
        self._beat_at = time.monotonic()

    async def _pooled_beat(self) -> None:
        with anyio.CancelScope(shield=True):
            async with self._pool.acquire(timeout=_BEAT_TIMEOUT) as conn:
                await self._beat(conn)

    async def _try(self, message: str, action: Callable[[], Awaitable[None]]) -> None:
        try:
            await action()
        except Exception as exc:  # keep migrating; the loop and the final flush retry
            log.warning(message, run_id=self._run_id, error=str(exc))

    async def __aenter__(self) -> LedgerWriter:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._loop)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        await self._tg.__aexit__(None, None, None)
        with anyio.CancelScope(shield=True):
            error = await persistently(self.flush)
        if error is not None:
            log.error("could not write the ledger; tenant histories still hold the truth",
                      run_id=self._run_id, error=str(error), unwritten=len(self._buffer))
        return None


async def persistently(action: Callable[[], Awaitable[None]]) -> Exception | None:
    """Run a control-schema write, trying again for a few seconds (the server may be
    restarting: waits of 0.5, 1, 1.5 and 2 s); return the last error if it never went
    through."""
    waits = Backoff(_FIRST_WAIT, 4 * _FIRST_WAIT, factor=1, increment=_FIRST_WAIT)
    for attempt in range(_FINAL_ATTEMPTS):
        try:
            await action()
            return None
        except Exception as exc:
            if attempt == _FINAL_ATTEMPTS - 1:
                return exc
            await waits.sleep()
    return None  # pragma: no cover - the loop always returns


# --- storage: runs and ledger rows ---------------------------------------------------------------

LEDGER_STATUSES = ("pending", "succeeded", "failed", "skipped")


@dataclass(frozen=True)
class RunRecord:
    """One row of ``runs``."""

    run_id: str
    command: str
    target: int | None
    status: str
    started_at: datetime
    finished_at: datetime | None
    invoked_by: str
    hostname: str | None
    arguments: dict[str, Any]
    resumed_from: str | None
    tenants: int
    silent_seconds: float | None = None
    """Seconds since the run last showed it was alive (its start, a ledger heartbeat),
    by the server's clock; None once it has finished."""

    def probably_dead(self) -> bool:
        """Recorded as running, but silent for much longer than a live runner ever is:
        the runner was most likely killed (SIGKILL, a lost machine)."""
        return (self.status == "running" and self.silent_seconds is not None
                and self.silent_seconds > STALE_AFTER)


@dataclass(frozen=True)
class LedgerRow:
    """One tenant's outcome in one run, as stored."""

    tenant: str
    status: str
    version_before: int | None
    version_reached: int | None
    target: int | None
    failing_version: int | None
    sqlstate: str | None
    message: str | None
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None


async def start_run(
    conn: Any,
    control_schema: str,
    *,
    run_id: str,
    command: str,
    target: int | None,
    arguments: dict[str, Any],
    resumed_from: str | None,
    tenants: Sequence[tuple[str, str, int | None, int | None]],
) -> None:
    """Record a run and one ledger row per targeted tenant: (tenant, status, before, target).

    One statement, so one round trip, atomic on its own."""
    ctl = quote_ident(control_schema)
    await conn.execute(
        f"""
        WITH run AS (
            INSERT INTO {ctl}.runs (run_id, command, target, hostname, arguments,
                                    resumed_from, tenants, heartbeat_at)
            VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, now())
            RETURNING run_id
        )
        INSERT INTO {ctl}.ledger (run_id, tenant, status, version_before, version_reached,
                                  target)
        SELECT run.run_id, t.tenant, t.status, t.version, t.version, t.target
        FROM run, unnest($8::text[], $9::text[], $10::text[]::bigint[], $11::text[]::bigint[])
            AS t(tenant, status, version, target)
        """,
        run_id,
        command,
        target,
        socket.gethostname(),
        json.dumps(arguments),
        resumed_from,
        len(tenants),
        [t for t, _, _, _ in tenants],
        [status for _, status, _, _ in tenants],
        text_array(before for _, _, before, _ in tenants),
        text_array(tgt for _, _, _, tgt in tenants),
    )


async def write_outcomes(conn: Any, control_schema: str, run_id: str,
                         rows: Sequence[LedgerRow]) -> None:
    """Update the ledger rows of finished tenants in one statement."""
    if not rows:
        return
    ctl = quote_ident(control_schema)
    await conn.execute(
        f"""
        UPDATE {ctl}.ledger AS l SET
            status = u.status, version_reached = u.version_reached,
            failing_version = u.failing_version, sqlstate = u.sqlstate,
            message = u.message, attempts = u.attempts,
            started_at = u.started_at, finished_at = u.finished_at
        FROM unnest($2::text[], $3::text[], $4::text[]::bigint[], $5::text[]::bigint[],
                    $6::text[], $7::text[], $8::text[]::integer[],
                    $9::text[]::timestamptz[], $10::text[]::timestamptz[])
            AS u(tenant, status, version_reached, failing_version, sqlstate, message,
                 attempts, started_at, finished_at)
        WHERE l.run_id = $1 AND l.tenant = u.tenant
        """,
        run_id,
        [r.tenant for r in rows],
        [r.status for r in rows],
        text_array(r.version_reached for r in rows),
        text_array(r.failing_version for r in rows),
        [r.sqlstate for r in rows],
        [r.message for r in rows],
        text_array(r.attempts for r in rows),
        text_array(r.started_at for r in rows),
        text_array(r.finished_at for r in rows),
    )


async def finish_run(conn: Any, control_schema: str, run_id: str, status: str) -> None:
    ctl = quote_ident(control_schema)
    await conn.execute(
        f"UPDATE {ctl}.runs SET status = $2, finished_at = now() WHERE run_id = $1",
        run_id,
        status,
    )


HEARTBEAT_EVERY = 5.0
"""Seconds between a running run's signs of life (``runs.heartbeat_at``)."""
STALE_AFTER = 60.0
"""Silent for longer than this, a run recorded as running is reported as probably dead."""


async def heartbeat(conn: Any, control_schema: str, run_id: str, *,
                    wait: float | None = None) -> None:
    await conn.execute(
        f"UPDATE {quote_ident(control_schema)}.runs SET heartbeat_at = now() "
        "WHERE run_id = $1", run_id, timeout=wait)


def _run(row: Any) -> RunRecord:
    arguments = row["arguments"]
    # No heartbeat_at (a run of an older release, which writes none): unknown.
    alive = row.get("heartbeat_at")
    return RunRecord(
        run_id=row["run_id"],
        command=row["command"],
        target=row["target"],
        status=row["status"],
        started_at=row["started_at"],
        finished_at=row["finished_at"],
        invoked_by=row["invoked_by"],
        hostname=row["hostname"],
        arguments=json.loads(arguments) if isinstance(arguments, str) else dict(arguments),
        resumed_from=row["resumed_from"],
        tenants=row["tenants"],
        silent_seconds=(None if row["finished_at"] is not None or alive is None
                        else (row["server_now"] - alive).total_seconds()),
    )


async def read_run(conn: Any, control_schema: str, run_id: str | None) -> RunRecord | None:
    """A run by id, or the latest run when *run_id* is None."""
    if not await control_exists(conn, control_schema, this_release=False):
        return None
    ctl = quote_ident(control_schema)
    if run_id is None:
        row = await conn.fetchrow(
            f"SELECT *, now() AS server_now FROM {ctl}.runs "
            "ORDER BY started_at DESC, run_id DESC LIMIT 1"
        )
    else:
        row = await conn.fetchrow(
            f"SELECT *, now() AS server_now FROM {ctl}.runs WHERE run_id = $1", run_id)
    return _run(row) if row is not None else None


async def read_ledger(conn: Any, control_schema: str, run_id: str) -> list[LedgerRow]:
    ctl = quote_ident(control_schema)
    rows = await conn.fetch(
        f"SELECT tenant, status, version_before, version_reached, target, failing_version, "
        f"sqlstate, message, attempts, started_at, finished_at FROM {ctl}.ledger "
        "WHERE run_id = $1 ORDER BY tenant",
        run_id,
    )
    return [LedgerRow(**dict(r)) for r in rows]


async def latest_failures(conn: Any, control_schema: str) -> dict[str, LedgerRow]:
    """Tenants that failed in the latest run, for ``status``."""
    run = await read_run(conn, control_schema, None)
    if run is None:
        return {}
    return {r.tenant: r for r in await read_ledger(conn, control_schema, run.run_id)
            if r.status == "failed"}


async def baselines(conn: Any, control_schema: str, tenants: Sequence[str]) -> dict[str, int]:
    """Tenant -> the version its latest successful ``baseline`` run recorded, for
    ``status``; tenants never baselined are left out."""
    if not tenants or not await control_exists(conn, control_schema, this_release=False):
        return {}
    ctl = quote_ident(control_schema)
    # From the few baseline runs to their rows (the ledger's key starts with the run): a
    # year of runs over 10,000 tenants is a million rows, never scanned by tenant.
    rows = await conn.fetch(
        f"SELECT DISTINCT ON (l.tenant) l.tenant, l.version_reached FROM {ctl}.runs r "
        f"JOIN {ctl}.ledger l ON l.run_id = r.run_id "
        "WHERE r.command = 'baseline' AND l.status = 'succeeded' "
        "ORDER BY l.tenant, r.started_at DESC"
    )
    wanted = set(tenants)
    return {r["tenant"]: r["version_reached"] for r in rows if r["tenant"] in wanted}


async def prune(conn: Any, control_schema: str, older_than_ms: int) -> int:
    """Delete the runs (and their ledger rows) that started more than *older_than_ms*
    ago and are over: never a running one, never the latest (``resume``'s default), never
    a baseline (``status`` shows what it adopted). Returns how many runs went."""
    if not await control_exists(conn, control_schema, this_release=False):
        return 0
    ctl = quote_ident(control_schema)
    deleted = await conn.fetchval(
        f"""
        WITH gone AS (
            DELETE FROM {ctl}.runs
            WHERE started_at < now() - $1::bigint * interval '1 millisecond'
              AND status <> 'running' AND command <> 'baseline'
              AND run_id <> (SELECT run_id FROM {ctl}.runs
                             ORDER BY started_at DESC, run_id DESC LIMIT 1)
            RETURNING 1
        )
        SELECT count(*) FROM gone
        """,
        older_than_ms,
    )
    return int(deleted)


async def status_facts(conn: Any, control_schema: str, tenants: Sequence[str]) -> tuple[
    RunRecord | None, dict[str, LedgerRow], dict[str, int]
]:
    """What ``status`` adds to the tenants' histories: the latest run, its failed tenants'
    rows, and the version each of *tenants* was baselined at."""
    last_run = await read_run(conn, control_schema, None)
    failures = await latest_failures(conn, control_schema) if last_run else {}
    return last_run, failures, await baselines(conn, control_schema, tenants)
