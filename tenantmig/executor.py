"""Executor: bounded fan-out over tenants, each on its own pooled connection.

Each worker holds one pooled connection and takes tenant after tenant. Per tenant, per
migration (or per group of migrations with ``atomic_tenant``):

* transactional SQL goes in one round trip per tenant (see ``batch``): the tenant's
  session advisory lock, the history re-read under it, then each migration in its own
  transaction with its history row; through PgBouncer (no session) the control schema's
  apply procedure does the same per transaction;
* transactional Python runs the same steps from the client in one transaction;
* non-transactional migrations hold the tenant's session advisory lock, drop INVALID
  indexes a previous attempt left behind, run statement by statement, then record.

Transient errors are retried with exponential backoff and jitter; anything else fails
that tenant and the others go on.
"""

from __future__ import annotations

import contextlib
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import anyio
import asyncpg
import structlog

from . import batch, history
from ._sql import UnsafeTenantName, quote_ident, text_array
from .context import MigrationContext
from .control import (
    CLAIM_FUNCTION,
    EXPECT_FUNCTION,
    SQLSTATE_BUSY,
    SQLSTATE_CHANGED,
    apply_procedure,
    tenant_lock_key,
)
from .durations import format_ms
from .outcome import Direction, OutcomeStatus
from .outcome import TenantOutcome as TenantOutcome
from .plan import TenantPlan
from .source import Migration, Step

if TYPE_CHECKING:
    from tenacity import RetryCallState

log = structlog.get_logger("tenantmig")

# SQLSTATEs worth another attempt (see NOTES-ON-SEED: retry policy).
TRANSIENT_SQLSTATES = frozenset(
    {"55P03", "40P01", "40001", "57014", "57P01", "57P02", "57P03", "53300"}
)


_CONNECTION_LOSS_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})


def is_connection_loss(exc: BaseException) -> bool:
    """The server went away or refused us: worth waiting for it to come back."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate in _CONNECTION_LOSS_SQLSTATES or sqlstate.startswith("08")
    return is_transient(exc)


def is_transient(exc: BaseException) -> bool:
    """Whether *exc* may succeed on another attempt (the version is re-read first)."""
    sqlstate = getattr(exc, "sqlstate", None)
    if isinstance(sqlstate, str):
        return sqlstate in TRANSIENT_SQLSTATES or sqlstate.startswith("08")
    if isinstance(exc, asyncpg.InternalClientError):
        # A backend killed while its connection sat idle: asyncpg sees the FATAL
        # message before the socket closes, and the next query trips over it.
        return True
    if isinstance(exc, asyncpg.InterfaceError):
        return "closed" in str(exc) or "connection" in str(exc).lower()
    return isinstance(exc, (ConnectionError, TimeoutError, OSError))


@dataclass(frozen=True)
class ExecOptions:
    """How the executor fans out and how patient it is."""

    concurrency: int = 8
    lock_timeout_ms: int = 5000
    retries: int = 3
    atomic_tenant: bool = False
    max_failures: int | None = None
    control_schema: str = "tenantmig"
    retry_initial_wait: float = 0.1
    retry_max_wait: float = 5.0
    reconnect_window: float = 30.0
    session: bool = True
    """Connections keep session state (False through PgBouncer in transaction mode): the
    tenant's SQL migrations then go in one batch per tenant."""


@dataclass
class _Unit:
    """What one call applies: migrations in one transaction (``atomic``), SQL migrations
    each in its own transaction in one round trip (``each``), or one migration alone;
    ``batch`` and ``atomic-batch`` are ``each`` and ``atomic`` sent as one batch."""

    kind: str
    """``single``, ``atomic``, ``each``, ``batch`` or ``atomic-batch``."""
    migrations: list[Migration] = field(default_factory=list)


@dataclass
class _Progress:
    """How far a unit got: the version being applied and the versions committed."""

    version: int
    done: list[int] = field(default_factory=list)


def _units(
    pending: Sequence[Migration], atomic: bool, direction: Direction, session: bool = True
) -> list[_Unit]:
    units: list[_Unit] = []
    for m in pending:
        step = m.up if direction == Direction.UP else m.down
        transactional = step.transactional if step is not None else True
        sql = step is not None and step.sql is not None
        plain = transactional and sql and step is not None and step.statement_timeout_ms is None
        kind = ("atomic" if atomic and transactional
                else "single" if atomic or not plain
                else "batch" if session and step is not None and step.batchable
                else "each")
        last = units[-1] if units else None
        if kind != "single" and last is not None and last.kind == kind:
            last.migrations.append(m)
        else:
            units.append(_Unit(kind, [m]))
    if session:
        # One transaction of plain SQL migrations goes as one batch too.
        for unit in units:
            steps = [m.up if direction == Direction.UP else m.down for m in unit.migrations]
            if unit.kind == "atomic" and all(
                s is not None and s.batchable and s.statement_timeout_ms is None
                for s in steps
            ):
                unit.kind = "atomic-batch"
    return units


async def _is_closed(conn: Any) -> bool:
    """Whether a pooled connection is unusable (asyncpg detaches a dead one)."""
    try:
        return bool(conn.is_closed())
    except asyncpg.InterfaceError:
        return True


# Waiting for a tenant another runner holds: poll, never block inside a statement.
_LOCK_POLL_FIRST, _LOCK_POLL_MAX = 0.005, 0.25


OutcomeCallback = Callable[[TenantOutcome], Awaitable[None] | None]


class Executor:
    """Applies planned migrations to tenants; one instance per run."""

    def __init__(
        self,
        pool: Any,
        options: ExecOptions,
        *,
        run_id: str,
        on_outcome: OutcomeCallback | None = None,
        direction: Direction = Direction.UP,
        on_cancelled: Callable[[TenantOutcome], None] | None = None,
        between_tenants: Callable[[Any], Awaitable[None]] | None = None,
    ) -> None:
        """*between_tenants* gets a worker's connection after each of its tenants, for
        a moment's use (the ledger's writes)."""
        self._pool = pool
        self._between_tenants = between_tenants
        self._on_cancelled = on_cancelled
        self._partial: dict[str, TenantOutcome] = {}
        self._options = options
        self._prime_args: tuple[object, ...] = ()
        self._run_id = run_id
        self._on_outcome = on_outcome
        self._direction = Direction(direction)
        self._stopping = False
        self._failures = 0
        self._apply = (
            f"CALL {apply_procedure(options.control_schema)}"
            "($1::text, $2::bigint, $3::text, $4::text[], $5::text[]::bigint[], $6::text[], "
            "$7::text[], $8::text[], $9::boolean, $10::boolean)"
        )

    def stop(self) -> None:
        """Start no new tenant; running ones finish."""
        self._stopping = True

    def count_failures(self, n: int) -> None:
        """*n* more tenants failed (also those refused before the run: they count towards
        ``max_failures`` like the others)."""
        self._failures += n
        limit = self._options.max_failures
        if limit is not None and self._failures > limit and not self._stopping:
            log.warning("max failures exceeded: starting no more tenants",
                        run_id=self._run_id, failures=self._failures, limit=limit)
            self._stopping = True

    @property
    def stopping(self) -> bool:
        return self._stopping

    async def run(self, plans: Sequence[TenantPlan], target: int | None) -> list[TenantOutcome]:
        """Apply every plan's pending migrations; return one outcome per plan, in order."""
        outcomes: dict[str, TenantOutcome] = {}
        queue = iter(plans)
        self._prime_args = batch.prime_args(
            self._run_id,
            format_ms(self._options.lock_timeout_ms),
            {
                (m.version, m.description, m.checksum,
                 None if step.lock_timeout_ms is None else self._lock_timeout(step))
                for p in plans for m in p.pending
                for step in [m.up if self._direction is Direction.UP else m.down]
                if step is not None and step.batchable
            },
        )

        async def worker() -> None:
            box = _Connection(self._pool)
            try:
                await work(box)
            finally:
                await box.release()

        async def work(box: _Connection) -> None:
            while not self._stopping:
                plan = next(queue, None)
                if plan is None:
                    return
                outcome = await self._tenant(plan, target, box)
                outcomes[plan.tenant] = outcome
                if self._options.session and self._may_set(plan):
                    # A SET in this tenant's Python or non-batchable SQL migration would
                    # stay in force for the next tenant on this connection.
                    await box.reset_session()
                if outcome.status is OutcomeStatus.FAILED:
                    self.count_failures(1)
                if self._on_outcome is not None:
                    result = self._on_outcome(outcome)
                    if result is not None:
                        await result
                if self._between_tenants is not None and box.held is not None:
                    await self._between_tenants(box.held)

        workers = max(1, min(self._options.concurrency, len(plans)))
        async with anyio.create_task_group() as tg:
            for _ in range(workers):
                tg.start_soon(worker)
        return [
            outcomes.get(p.tenant)
            or TenantOutcome(p.tenant, OutcomeStatus.PENDING, p.current, p.current, target)
            for p in plans
        ]

    def _may_set(self, plan: TenantPlan) -> bool:
        """Whether a migration the tenant ran may have changed a session setting: any
        but plain batchable SQL (which the loader checked holds no SET)."""
        steps = (self._step_or_none(m) for m in plan.pending)
        return any(step is not None and not step.batchable for step in steps)

    # --- one tenant -----------------------------------------------------------------

    async def _tenant(self, plan: TenantPlan, target: int | None,
                      box: _Connection) -> TenantOutcome:
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        tenant_log = log.bind(run_id=self._run_id, tenant=plan.tenant)
        remaining = set(plan.applied)
        reached = plan.current
        applied: list[int] = []
        attempts = 0
        failure: tuple[int, BaseException] | None = None
        state = _TenantState(plan.has_history)
        try:
            for unit in _units(plan.pending, self._options.atomic_tenant, self._direction,
                               self._options.session):
                if self._on_cancelled is not None:
                    self._partial[plan.tenant] = TenantOutcome(
                        plan.tenant, OutcomeStatus.PENDING, plan.current, reached, target,
                        applied=tuple(applied), attempts=attempts, started_at=started_at,
                    )
                progress = _Progress(unit.migrations[0].version)
                tries, error = await self._unit_with_retries(plan.tenant, unit, box,
                                                             tenant_log, progress, state)
                # The ledger's attempts: the most tries one step needed (1: no retry),
                # not a count of steps, which would vary with how migrations are grouped.
                attempts = max(attempts, tries)
                applied.extend(progress.done)
                if progress.done and self._direction is Direction.UP:
                    state.has_history = True
                finished = progress.done if error is not None else [
                    m.version for m in unit.migrations
                ]
                for version in finished:
                    if self._direction is Direction.UP:
                        remaining.add(version)
                    else:
                        remaining.discard(version)
                reached = max(remaining) if remaining else None
                if error is not None:
                    failure = (progress.version, error)
                    break
        except anyio.get_cancelled_exc_class():
            # Cancelled (second signal): record how far the tenant got; it stays pending.
            partial = self._partial.pop(plan.tenant, None)
            if partial is not None and self._on_cancelled is not None:
                self._on_cancelled(partial)
            raise
        finally:
            self._partial.pop(plan.tenant, None)
        status = OutcomeStatus.SUCCEEDED if failure is None else OutcomeStatus.FAILED
        sqlstate = getattr(failure[1], "sqlstate", None) if failure else None
        if failure is not None:
            tenant_log.error("tenant failed", version=failure[0], sqlstate=sqlstate,
                             error=_message(failure[1]))
        else:
            tenant_log.debug("tenant done", applied=applied)
        return TenantOutcome(
            tenant=plan.tenant,
            status=status,
            version_before=plan.current,
            version_reached=reached,
            target=target,
            applied=tuple(applied),
            failing_version=failure[0] if failure else None,
            sqlstate=sqlstate if isinstance(sqlstate, str) else None,
            message=_message(failure[1]) if failure else None,
            attempts=attempts,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            seconds=time.perf_counter() - t0,
        )

    async def _unit_with_retries(
        self, tenant: str, unit: _Unit, box: _Connection, tenant_log: Any, progress: _Progress,
        state: _TenantState,
    ) -> tuple[int, BaseException | None]:
        """Apply one unit with retries: (attempts, final error or None); *progress* says
        which versions were committed and which one was being applied."""
        attempts = 0

        async def attempt() -> None:
            nonlocal attempts
            attempts += 1
            conn = await box.get()
            if not box.primed and self._options.session:
                await conn.execute(batch.PRIME_SQL, *self._prime_args)
                box.primed = True
            try:
                unbatched = (_Unit("atomic", unit.migrations) if unit.kind == "atomic-batch"
                             else unit)
                try:
                    if unit.kind == "batch" or (unit is not unbatched and not state.unlocated):
                        await self._apply_batch(conn, tenant, unit, progress, state)
                    else:
                        await self._unit(conn, tenant, unbatched, tenant_log, progress)
                except _Unlocated:
                    # Nothing of the group committed, and the error did not say where
                    # it happened: apply the group again, one procedure call per
                    # migration, which names the failing one (failing tenants only; a
                    # deterministic error comes back, located).
                    state.unlocated = True
                    await self._unit(conn, tenant, unbatched, tenant_log, progress)
            except Exception as exc:
                if is_connection_loss(exc) or await _is_closed(conn):
                    with contextlib.suppress(Exception):
                        conn.terminate()
                    await box.discard()
                raise

        def warn(exc: BaseException, attempt_number: int, wait: float) -> None:
            tenant_log.warning(
                "transient error, retrying",
                version=progress.version,
                attempt=attempt_number,
                sqlstate=getattr(exc, "sqlstate", None),
                error=_message(exc),
                wait=round(wait, 3),
            )

        def before_sleep(state: RetryCallState) -> None:
            exc = state.outcome.exception() if state.outcome else None
            if exc is not None:
                warn(exc, state.attempt_number + 1, state.upcoming_sleep)

        try:
            # The first attempt runs bare: the retry machinery costs more than the
            # bookkeeping it protects, and almost every migration succeeds first time.
            try:
                await attempt()
                return attempts, None
            except Exception as exc:
                if not is_transient(exc) or not self._may_retry(exc):
                    raise
                wait = random.uniform(0, self._options.retry_initial_wait)
                warn(exc, 1, wait)
                await anyio.sleep(wait)
            # Imported on the first retry only: most runs never need it (start-up time).
            from tenacity import AsyncRetrying, retry_if_exception, wait_random_exponential

            retrying = AsyncRetrying(
                retry=retry_if_exception(is_transient),
                stop=self._stop_retrying,
                wait=wait_random_exponential(
                    multiplier=self._options.retry_initial_wait,
                    max=self._options.retry_max_wait,
                ),
                before_sleep=before_sleep,
                reraise=True,
            )
            async for retry in retrying:
                with retry:
                    await attempt()
        except Exception as exc:
            indexes = [i for m in unit.migrations if (s := self._step_or_none(m)) is not None
                       for i in s.concurrent_indexes]
            if getattr(exc, "sqlstate", None) == "55P03":
                exc = _LockTimeout(exc, await self._blockers(box, tenant,
                                                             snapshots=bool(indexes)))
            if indexes:
                left = await self._drop_leftover_indexes(box, tenant, indexes)
                if left:
                    exc = _WithNote(exc, "INVALID index(es) left in place, dropped before the "
                                    "next attempt: " + ", ".join(left))
            return attempts, exc
        return attempts, None

    def _step_or_none(self, migration: Migration) -> Step | None:
        return migration.up if self._direction is Direction.UP else migration.down

    async def _drop_leftover_indexes(self, box: _Connection, tenant: str,
                                     names: Sequence[str]) -> list[str]:
        """After a no-transaction index build failed for good: drop the INVALID index it
        left (it slows every write to the table) if the tenant is still ours to touch;
        returns those left in place. A plain DROP INDEX under a short lock timeout:
        DROP INDEX CONCURRENTLY would wait for the same old snapshot the build did."""
        try:
            conn = await box.get()
            invalid = [r[0] for r in await conn.fetch(_INVALID_INDEXES, tenant, list(names))]
            if not invalid:
                return []
            key = tenant_lock_key(tenant)
            if not await conn.fetchval("SELECT pg_catalog.pg_try_advisory_lock($1)", key):
                return invalid  # another runner has the tenant now
            try:
                for name in invalid:
                    async with conn.transaction():
                        await conn.execute("SET LOCAL lock_timeout = '100ms'")
                        await conn.execute(f"DROP INDEX IF EXISTS {quote_ident(tenant)}."
                                           f"{quote_ident(name)}")
            finally:
                await conn.execute("SELECT pg_catalog.pg_advisory_unlock($1)", key)
            return []
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            try:
                conn = await box.get()
                return [r[0] for r in await conn.fetch(_INVALID_INDEXES, tenant, list(names))]
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                return list(names)

    def _may_retry(self, exc: BaseException) -> bool:
        return self._options.retries > 0 or is_connection_loss(exc)

    async def _blockers(self, box: _Connection, tenant: str, *, snapshots: bool = False) -> str:
        """Who holds locks in the tenant's schema now: pid, state and query; for an index
        built CONCURRENTLY, also the oldest transactions of the database (the build
        waits for every one older than itself, whatever it touches)."""
        try:
            conn = await box.get()
            rows = await conn.fetch(_BLOCKERS, tenant)
            if snapshots:
                seen = {r["pid"] for r in rows}
                rows = [*rows, *(r for r in await conn.fetch(_OLD_TRANSACTIONS)
                                 if r["pid"] not in seen)]
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return ""
        return "; ".join(
            f"pid {r['pid']} ({r['state']}, {r['xact_seconds']}s in transaction): "
            f"{r['query']}"
            for r in rows
        )

    def _stop_retrying(self, state: RetryCallState) -> bool:
        """``--retries`` retries after the first attempt; for a lost server, also keep
        trying for ``reconnect_window`` seconds, so a restart or failover does not fail
        the run."""
        if state.attempt_number >= self._options.retries:
            exc = state.outcome.exception() if state.outcome else None
            if exc is None or not is_connection_loss(exc):
                return True
            return (state.seconds_since_start or 0.0) >= self._options.reconnect_window
        return False

    async def _unit(
        self, conn: Any, tenant: str, unit: _Unit, tenant_log: Any, progress: _Progress
    ) -> None:
        """Apply one unit, recording in *progress* what committed."""
        undo = self._direction is Direction.DOWN
        steps = [(m, self._step(m)) for m in unit.migrations]
        if unit.kind == "each":
            await self._apply_each(conn, tenant, steps, undo, progress)
            return
        ((first, first_step), *_) = steps
        if not first_step.transactional:
            progress.version = first.version
            if await self._non_transactional(conn, tenant, first, first_step, tenant_log):
                progress.done.append(first.version)
            return
        # A migration's statement timeout is its own: in one transaction for several
        # (--atomic-tenant) it is set before it and the session's put back after it.
        timed = any(s.statement_timeout_ms is not None for _, s in steps)
        done: list[int] = []
        async with conn.transaction():
            session_timeout = (await conn.fetchval("SHOW statement_timeout") if timed
                               else None)
            for migration, step in steps:
                progress.version = migration.version
                if timed:
                    await conn.execute(
                        "SELECT pg_catalog.set_config('statement_timeout', $1, true)",
                        session_timeout if step.statement_timeout_ms is None
                        else format_ms(step.statement_timeout_ms),
                    )
                if step.sql is not None:
                    done.extend(await self._apply_sql(conn, tenant, [(migration, step)], undo))
                elif await self._python_in_transaction(conn, tenant, migration, step,
                                                       tenant_log):
                    done.append(migration.version)
        progress.done.extend(done)

    async def _apply_batch(
        self,
        conn: Any,
        tenant: str,
        unit: _Unit,
        progress: _Progress,
        state: _TenantState,
    ) -> None:
        """The unit's migrations in one batch (see ``batch``). While another runner holds
        the tenant, wait and try again; when the history changed since it was read, go on
        from what is left; on a real error, record what committed and raise."""
        undo = self._direction is Direction.DOWN
        key = tenant_lock_key(tenant)
        todo = [(m, self._step(m)) for m in unit.migrations]
        # Rendered up front: a migration that cannot hold this tenant's name safely
        # (UnsafeTenantName) ends the batch before it, and fails once those committed;
        # an all-or-nothing group fails whole.
        items: dict[int, batch.Item] = {}
        refused: tuple[int, UnsafeTenantName] | None = None
        for m, s in todo:
            try:
                items[m.version] = batch.Item(m.version, s.render(tenant),
                                              s.lock_timeout_ms is not None)
            except UnsafeTenantName as exc:
                refused = (m.version, exc)
                break
        if refused is not None and (not items or unit.kind == "atomic-batch"):
            progress.version = refused[0]
            raise refused[1]
        todo = [(m, s) for m, s in todo if m.version in items]
        wait = _LOCK_POLL_FIRST
        replans = 0
        if not state.known:
            # An earlier attempt lost its connection: what did it commit?
            todo, _, _ = await self._read_back(conn, tenant, todo, progress, state)
        while todo:
            progress.version = todo[0][0].version
            work = batch.build(
                self._options.control_schema,
                tenant,
                key,
                [items[m.version] for m, _ in todo],
                undo=undo,
                has_history=state.has_history,
                atomic=unit.kind == "atomic-batch",
            )
            try:
                await conn.execute(work.sql)
            except asyncpg.PostgresError as exc:
                state.known = False
                if is_connection_loss(exc):
                    raise
                if conn.is_in_transaction():
                    await conn.execute("ROLLBACK")
                if _raised_by(exc, SQLSTATE_BUSY, CLAIM_FUNCTION):
                    state.known = True
                    await anyio.sleep(wait)
                    wait = min(wait * 2, _LOCK_POLL_MAX)
                    continue
                await conn.execute(batch.UNLOCK_IF_HELD, key)
                had_history = state.has_history
                todo, ours, foreign = await self._read_back(conn, tenant, todo, progress, state)
                # Another run's rows mean another runner got there between our read and
                # our lock (the re-read is skipped for a tenant without a history table:
                # creating it then fails instead).
                appeared = not had_history and state.has_history and not ours
                if _raised_by(exc, SQLSTATE_CHANGED, EXPECT_FUNCTION) or foreign or appeared:
                    replans += 1
                    if replans > _MAX_REPLANS:
                        raise
                    continue
                failing = work.version_at(getattr(exc, "position", None))
                left = [m.version for m, _ in todo]
                if unit.kind == "atomic-batch" and left and failing not in left:
                    raise _Unlocated from exc
                progress.version = failing if failing in left else (
                    left[0] if left else progress.version)
                raise
            except BaseException:
                state.known = False
                raise
            progress.done.extend(m.version for m, _ in todo)
            break
        if refused is not None:
            progress.version = refused[0]
            raise refused[1]

    async def _read_back(
        self,
        conn: Any,
        tenant: str,
        todo: Sequence[tuple[Migration, Step]],
        progress: _Progress,
        state: _TenantState,
    ) -> tuple[list[tuple[Migration, Step]], bool, bool]:
        """After a batch ended early: record in *progress* the versions this run
        committed, update *state*; return what is left to do, whether this run committed
        any of *todo*, and whether another run did."""
        undo = self._direction is Direction.DOWN
        present, state.has_history = await self._reread(conn, tenant, todo)
        state.known = True
        runs = {m.version: present[m.version] for m, _ in todo if m.version in present}
        ours = ([m.version for m, _ in todo if m.version not in present] if undo
                else [v for v, run in runs.items() if run == self._run_id])
        foreign = not undo and any(run != self._run_id for run in runs.values())
        progress.done.extend(v for v in ours if v not in progress.done)
        left = [(m, s) for m, s in todo if (m.version in present) == undo]
        return left, bool(ours), foreign

    async def _reread(
        self, conn: Any, tenant: str, todo: Sequence[tuple[Migration, Step]]
    ) -> tuple[dict[int, str | None], bool]:
        """Which of *todo* are in the tenant's history now (with the run that applied
        them), and whether it has a history table."""
        if not await self._has_history(conn, tenant):
            return {}, False
        rows = await history.fetch_once(
            conn,
            f"SELECT version, run_id FROM {history.table(tenant)} "
            "WHERE version = ANY($1::text[]::bigint[])",
            text_array(m.version for m, _ in todo),
            session=self._options.session,
        )
        return {r["version"]: r["run_id"] for r in rows}, True

    async def _apply_each(
        self,
        conn: Any,
        tenant: str,
        steps: Sequence[tuple[Migration, Step]],
        undo: bool,
        progress: _Progress,
    ) -> None:
        """SQL migrations each in its own transaction, all in one round trip (the apply
        procedure COMMITs after each). It stops early while another runner holds the
        tenant: wait, then go on from where it stopped."""
        todo = list(steps)
        wait = _LOCK_POLL_FIRST
        while todo:
            progress.version = todo[0][0].version
            try:
                done, next_index = await self._call(conn, tenant, todo, undo, commit=True)
            except Exception:
                await self._settle(conn, tenant, todo, undo, progress)
                raise
            progress.done.extend(done)
            todo = todo[next_index - 1 :]
            if todo:
                await anyio.sleep(wait)
                wait = min(wait * 2, _LOCK_POLL_MAX)

    async def _settle(
        self,
        conn: Any,
        tenant: str,
        todo: Sequence[tuple[Migration, Step]],
        undo: bool,
        progress: _Progress,
    ) -> None:
        """After a failed call: which of *todo* committed before the error, and which
        version failed (the first one not done)."""
        try:
            if await _is_closed(conn):
                return
            present, _ = await self._reread(conn, tenant, todo)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return
        for migration, _ in todo:
            if (migration.version in present) != undo:
                if migration.version not in progress.done:
                    progress.done.append(migration.version)
            else:
                progress.version = migration.version
                return

    async def _has_history(self, conn: Any, tenant: str) -> bool:
        return bool(await conn.fetchval("SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                                        history.table(tenant)))

    def _step(self, migration: Migration) -> Step:
        if self._direction is Direction.UP:
            return migration.up
        if migration.down is None:
            raise RuntimeError(f"version {migration.version} has no undo")
        return migration.down

    def _lock_timeout(self, step: Step) -> str:
        ms = step.lock_timeout_ms
        return format_ms(self._options.lock_timeout_ms if ms is None else ms)

    async def _call(
        self,
        conn: Any,
        tenant: str,
        steps: Sequence[tuple[Migration, Step]],
        undo: bool,
        *,
        commit: bool,
        lock_timeout: str | None = None,
    ) -> tuple[list[int], int]:
        """One CALL of the apply procedure: (versions done, index of the first version
        not processed — at most ``len(steps)`` while another runner holds the tenant)."""
        row = await conn.fetchrow(
            self._apply,
            quote_ident(tenant),
            tenant_lock_key(tenant),
            self._run_id,
            [self._lock_timeout(s) for _, s in steps] if steps else [lock_timeout],
            text_array(m.version for m, _ in steps),
            [m.description for m, _ in steps],
            [m.checksum for m, _ in steps],
            [s.render(tenant) for _, s in steps],
            undo,
            commit,
        )
        return list(row["p_done"]), int(row["p_next"])

    async def _in_transaction(
        self,
        conn: Any,
        tenant: str,
        steps: Sequence[tuple[Migration, Step]],
        undo: bool,
        lock_timeout: str | None = None,
    ) -> list[int]:
        """The apply procedure inside the caller's transaction, trying again while another
        runner holds the tenant (it holds no snapshot between two tries)."""
        wait = _LOCK_POLL_FIRST
        while True:
            done, next_index = await self._call(conn, tenant, steps, undo, commit=False,
                                                lock_timeout=lock_timeout)
            if next_index > len(steps):
                return done
            await anyio.sleep(wait)
            wait = min(wait * 2, _LOCK_POLL_MAX)

    async def _apply_sql(
        self, conn: Any, tenant: str, steps: Sequence[tuple[Migration, Step]], undo: bool
    ) -> list[int]:
        """Transactional SQL inside the caller's transaction."""
        return await self._in_transaction(conn, tenant, steps, undo)

    async def _lock_and_prepare(self, conn: Any, tenant: str, step: Step) -> None:
        """Tenant lock, lock timeout, empty search_path, history table: the apply
        procedure with nothing to apply."""
        await self._in_transaction(conn, tenant, [], False, self._lock_timeout(step))

    async def _is_applied(self, conn: Any, tenant: str, version: int) -> bool:
        if not await self._has_history(conn, tenant):
            return False
        return bool(await history.fetch_once(
            conn, f"SELECT 1 FROM {history.table(tenant)} WHERE version = $1", version,
            session=self._options.session,
        ))

    async def _record(self, conn: Any, tenant: str, migration: Migration, seconds: float) -> None:
        if self._direction is Direction.UP:
            await history.fetch_once(
                conn,
                history.insert_sql(tenant),
                migration.version,
                migration.description,
                migration.checksum,
                math.ceil(seconds * 1000),
                self._run_id,
                session=self._options.session,
            )
        else:
            await history.fetch_once(conn, history.delete_sql(tenant), migration.version,
                                     session=self._options.session)

    def _context(self, conn: Any, tenant: str, migration: Migration, step: Step,
                 tenant_log: Any) -> MigrationContext:
        ms = step.lock_timeout_ms
        return MigrationContext(
            control_schema=self._options.control_schema,
            conn=conn,
            schema=tenant,
            version=migration.version,
            run_id=self._run_id,
            transactional=step.transactional,
            lock_timeout_ms=self._options.lock_timeout_ms if ms is None else ms,
            log=tenant_log.bind(version=migration.version),
        )

    async def _python_in_transaction(
        self, conn: Any, tenant: str, migration: Migration, step: Step, tenant_log: Any
    ) -> bool:
        """A transactional Python step; the caller holds the transaction."""
        await self._lock_and_prepare(conn, tenant, step)
        if await self._is_applied(conn, tenant, migration.version) != (
            self._direction is Direction.DOWN
        ):
            return False
        assert step.python is not None
        t0 = time.perf_counter()
        await step.python(self._context(conn, tenant, migration, step, tenant_log))
        await self._record(conn, tenant, migration, time.perf_counter() - t0)
        return True

    async def _non_transactional(
        self, conn: Any, tenant: str, migration: Migration, step: Step, tenant_log: Any
    ) -> bool:
        """Statement by statement under the tenant's session-level advisory lock."""
        key = tenant_lock_key(tenant)
        wait = _LOCK_POLL_FIRST
        while not await conn.fetchval("SELECT pg_catalog.pg_try_advisory_lock($1)", key):
            await anyio.sleep(wait)
            wait = min(wait * 2, _LOCK_POLL_MAX)
        try:
            present = await self._is_applied(conn, tenant, migration.version)
            if present != (self._direction is Direction.DOWN):
                return False
            await conn.execute(
                "SELECT pg_catalog.set_config('search_path', '', false), "
                "pg_catalog.set_config('lock_timeout', $1, false)",
                self._lock_timeout(step),
            )
            if step.statement_timeout_ms is not None:
                await conn.execute(
                    "SELECT pg_catalog.set_config('statement_timeout', $1, false)",
                    format_ms(step.statement_timeout_ms),
                )
            await self._drop_invalid_indexes(conn, tenant, step, tenant_log)
            t0 = time.perf_counter()
            if step.python is not None:
                await step.python(self._context(conn, tenant, migration, step, tenant_log))
            else:
                for index in range(len(step.statements)):
                    await conn.execute(step.render_statement(index, tenant))
            seconds = time.perf_counter() - t0
            async with conn.transaction():
                await self._lock_and_prepare(conn, tenant, step)
                await self._record(conn, tenant, migration, seconds)
            return True
        finally:
            if not await _is_closed(conn):
                try:
                    await conn.execute("RESET search_path; RESET lock_timeout; "
                                       "RESET statement_timeout")
                    await conn.execute("SELECT pg_catalog.pg_advisory_unlock($1)", key)
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                    await conn.close()

    async def _drop_invalid_indexes(
        self, conn: Any, tenant: str, step: Step, tenant_log: Any
    ) -> None:
        if not step.concurrent_indexes:
            return
        rows = await conn.fetch(_INVALID_INDEXES, tenant, list(step.concurrent_indexes))
        for (name,) in rows:
            tenant_log.warning("dropping INVALID index left by an earlier attempt", index=name)
            await conn.execute(
                f"DROP INDEX CONCURRENTLY IF EXISTS {quote_ident(tenant)}.{quote_ident(name)}"
            )


def _raised_by(exc: asyncpg.PostgresError, sqlstate: str, function: str) -> bool:
    """Whether *exc* is our own function's signal, not a migration raising the same code."""
    return exc.sqlstate == sqlstate and function in (getattr(exc, "context", None) or "")


@dataclass
class _TenantState:
    has_history: bool
    """As last known: whether the tenant has its history table."""
    known: bool = True
    """False after a batch ended without an answer (connection lost, cancelled): what it
    committed must be read back first."""
    unlocated: bool = False
    """An ``--atomic-tenant`` batch failed and the error did not say in which migration:
    this tenant's group goes through the apply procedure, which knows, from then on."""


class _Unlocated(Exception):
    """An ``--atomic-tenant`` batch rolled back on an error without a position."""


# How often a tenant's batch may find its history changed by another runner in a row.
_MAX_REPLANS = 100


class _Connection:
    """The pooled connection a worker uses for tenant after tenant, replaced when it
    breaks."""

    def __init__(self, pool: Any) -> None:
        self._pool = pool
        self._conn: Any = None
        self.primed = False
        """The run's session settings are set (``batch.PRIME_SQL``)."""

    @property
    def held(self) -> Any:
        """The connection, if one is held and usable."""
        conn = self._conn
        return None if conn is None or conn.is_closed() else conn

    async def get(self) -> Any:
        if self._conn is not None and await _is_closed(self._conn):
            await self.discard()
        if self._conn is None:
            self._conn = await self._pool.acquire()
        return self._conn

    async def discard(self) -> None:
        await self.release()

    async def reset_session(self) -> None:
        """Every setting back to the connection's defaults; the run's are primed again
        before the next tenant."""
        if self._conn is None:
            return
        try:
            # RESET ALL leaves the role alone (role and session_authorization are not
            # reset by it): a SET ROLE in one tenant's migration must not outlive it.
            await self._conn.execute(
                "RESET ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ROLE")
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            await self.discard()
        self.primed = False

    async def release(self) -> None:
        conn, self._conn = self._conn, None
        self.primed = False
        if conn is not None:
            with anyio.CancelScope(shield=True):
                try:
                    await self._pool.release(conn)
                except Exception:
                    # Already detached from the pool (it died) or unusable: let it go.
                    with contextlib.suppress(Exception):
                        conn.terminate()


_BLOCKERS = """
SELECT DISTINCT a.pid, coalesce(a.state, '?') AS state,
       coalesce(round(extract(epoch FROM now() - a.xact_start))::int, 0) AS xact_seconds,
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 120) AS query
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_class c ON c.oid = l.relation
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE n.nspname = $1 AND l.granted AND l.pid <> pg_catalog.pg_backend_pid()
ORDER BY a.pid
LIMIT 3
"""


_OLD_TRANSACTIONS = """
SELECT a.pid, coalesce(a.state, '?') AS state,
       coalesce(round(extract(epoch FROM now() - a.xact_start))::int, 0) AS xact_seconds,
       left(regexp_replace(coalesce(a.query, ''), '\\s+', ' ', 'g'), 120) AS query
FROM pg_catalog.pg_stat_activity a
WHERE a.datname = pg_catalog.current_database() AND a.pid <> pg_catalog.pg_backend_pid()
  AND a.backend_xmin IS NOT NULL AND a.xact_start IS NOT NULL
ORDER BY a.xact_start
LIMIT 3
"""

_INVALID_INDEXES = """
SELECT c.relname FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND NOT i.indisvalid
"""


class _WithNote(Exception):
    """A failure with a note of what it left behind."""

    def __init__(self, cause: BaseException, note: str) -> None:
        self.sqlstate = getattr(cause, "sqlstate", None)
        super().__init__(f"{_message(cause)}; {note}")


class _LockTimeout(Exception):
    """A lock timeout that ran out of retries, with who was holding the locks."""

    sqlstate = "55P03"

    def __init__(self, cause: BaseException, blockers: str) -> None:
        super().__init__(_message(cause) + (f"; blocked by {blockers}" if blockers else ""))


def _message(exc: BaseException) -> str:
    if isinstance(exc, _LockTimeout | _WithNote):
        return str(exc)
    if isinstance(exc, asyncpg.PostgresError):
        text = str(getattr(exc, "message", None) or exc)
        detail = getattr(exc, "detail", None)
        return f"{text} ({detail})" if detail else text
    return f"{type(exc).__name__}: {exc}"
