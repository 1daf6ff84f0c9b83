"""A run's life in the control schema: its id, its recorded start (with a ledger row per
targeted tenant) and end; and the refusal of a command by the database itself."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import anyio
import asyncpg
import structlog

from . import baseline, control
from ._exceptions import ConfigError, DatabaseUnavailable, TargetError
from .discovery import existing, listed
from .executor import ExecOptions, Executor, OutcomeCallback
from .ledger import (
    LedgerRow,
    LedgerWriter,
    RunRecord,
    finish_run,
    persistently,
    prune,
    read_ledger,
    read_run,
    start_run,
)
from .lint import Finding
from .outcome import Direction, OutcomeStatus, TenantOutcome
from .plan import TenantPlan
from .report import Report
from .source import Migration, Step

log = structlog.get_logger("tenantmig")


@contextlib.contextmanager
def database_refusal(what: str) -> Iterator[None]:
    """A server error in tenantmig's own queries before any tenant is touched (a missing
    privilege, most often) is the database refusing the command, not a tenant's failure."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise _refusal(what, exc) from exc
    except BaseExceptionGroup as group:  # from a task group (history reads)
        matched, _rest = group.split(asyncpg.PostgresError)
        if matched is None:
            raise
        first: BaseException = matched
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise _refusal(what, first) from group


def _refusal(what: str, exc: BaseException) -> DatabaseUnavailable:
    sqlstate = getattr(exc, "sqlstate", None)
    return DatabaseUnavailable(
        f"{what}: {exc.__class__.__name__}: {exc} (SQLSTATE {sqlstate}); nothing was migrated"
    )


def new_run_id() -> str:
    """Sortable and unique enough across runners: UTC time plus random bits."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)




async def begin_run(
    pool: Any,
    control_schema: str,
    prefix: str,
    *,
    command: str,
    target: int | None,
    arguments: dict[str, Any],
    resumed_from: str | None,
    tenants: Sequence[tuple[str, str, int | None, int | None]],
) -> str:
    """Set up the control schema if needed and record a new run with one ledger row per
    tenant (tenant, status, version before, target); returns the run id."""
    with database_refusal(f"setting up the control schema {control_schema!r}"):
        async with pool.acquire() as conn:
            await control.ensure_control(conn, control_schema, prefix)
            run_id = new_run_id()
            await start_run(conn, control_schema, run_id=run_id, command=command,
                            target=target, arguments=arguments, resumed_from=resumed_from,
                            tenants=tenants)
    return run_id


async def end_run(pool: Any, control_schema: str, run_id: str, status: str) -> None:
    """Record how the run ended, trying again for a while (shielded from cancellation)."""

    async def finish() -> None:
        async with pool.acquire() as conn:
            await finish_run(conn, control_schema, run_id, status)

    with anyio.CancelScope(shield=True):
        error = await persistently(finish)
    if error is not None:
        log.warning("could not record the end of the run", run_id=run_id, error=str(error))
    log.info("run finished", run_id=run_id, status=status)


async def prune_old_runs(pool: Any, control_schema: str, older_than_ms: int) -> int:
    """:func:`ledger.prune`, shielded and logged; a failure is a warning, not the run's."""
    with anyio.CancelScope(shield=True):
        try:
            async with pool.acquire() as conn:
                pruned = await prune(conn, control_schema, older_than_ms)
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.warning("could not prune old runs from the ledger", error=str(exc))
            return 0
    if pruned:
        log.info("old runs pruned from the ledger", runs=pruned)
    return pruned


class StopSwitch:
    """A stop asked for from outside a run (a signal): the run starts no new tenant."""

    def __init__(self) -> None:
        self.requested = False
        self.executor: Executor | None = None

    def request(self) -> None:
        self.requested = True
        if self.executor is not None:
            self.executor.stop()


@dataclass(frozen=True)
class RunHost:
    """What a run takes from its engine: the database and how to run there."""

    pool: Any
    options: ExecOptions
    control_schema: str
    prefix: str
    folder: str
    """The migrations folder, recorded so that resume finds the same files."""
    pgbouncer: bool
    stop: StopSwitch
    on_outcome: OutcomeCallback | None
    on_run_start: Callable[[int], None] | None
    retention_ms: int | None = None
    """Prune runs older than this once a run has ended (``ledger_retention``)."""


@dataclass(frozen=True)
class RunRequest:
    """One run to make: the tenants' plans and what the run is."""

    plans: Sequence[TenantPlan]
    target: int | None
    direction: Direction
    command: str
    arguments: dict[str, Any]
    resumed_from: str | None
    t0: float
    refused: dict[str, TenantOutcome]
    """Tenants not to touch, with the (failed) outcome they end with."""
    shared: TenantPlan | None = None
    """The shared schema's plan: its migrations run before any tenant."""


async def execute(request: RunRequest, host: RunHost,
                  check_safety: Callable[[], list[Finding]]) -> Report:
    """Make the run: nothing to do is no run at all; otherwise refuse what cannot run here
    (a session-holding migration through PgBouncer, an unsafe one: *check_safety* returns
    the accepted findings, recorded with the run), record it, migrate, record its end."""
    r = request
    first = [r.shared] if r.shared is not None and r.shared.pending else []
    work = [p for p in r.plans if p.pending and p.tenant not in r.refused]
    if not work and not r.refused and not first:
        log.info("nothing to do", tenants=len(r.plans), target=r.target)
        return Report(r.command, None, r.target, tuple(
            TenantOutcome(p.tenant, OutcomeStatus.SKIPPED, p.current, p.current, r.target)
            for p in r.plans if not p.pending), time.perf_counter() - r.t0)
    steps = {(m.version, str(step.path)): step for p in (*first, *work) for m in p.pending
             if (step := m.up if r.direction is Direction.UP else m.down) is not None}
    if host.pgbouncer:
        _refuse_sessions(steps)
    paths = {path for _, path in steps}
    arguments = dict(r.arguments)
    accepted = [f for f in check_safety() if f.path in paths]
    if accepted:
        arguments["allowed"] = [{"file": f.path, "line": f.line, "rule": f.rule,
                                 "reason": f.allowed} for f in accepted]
    arguments["migrations_dir"] = host.folder
    run_id = await begin_run(
        host.pool, host.control_schema, host.prefix, command=r.command, target=r.target,
        arguments=arguments, resumed_from=r.resumed_from,
        tenants=[*((p.tenant, "pending", p.current, p.target) for p in first),
                 *((p.tenant, "pending" if p.pending else "skipped", p.current, r.target)
                   for p in r.plans)],
    )
    log.info("run started", run_id=run_id, command=r.command, tenants=len(r.plans),
             work=len(work), target=r.target, concurrency=host.options.concurrency)
    if host.on_run_start is not None:
        host.on_run_start(len(work) + len(r.refused))
    return await _run_plans(host, r, run_id, first, work)


def _refuse_sessions(steps: Mapping[tuple[int, str], Step]) -> None:
    """Through PgBouncer's transaction pooling no session can be held: name, in version
    order, the migrations that need one."""
    sessionful = [Path(s.path).name for _, s in sorted(steps.items()) if not s.transactional]
    if sessionful:
        raise ConfigError(
            "through PgBouncer in transaction mode only transactional migrations can "
            "run; these hold a session (advisory lock, settings) and need a direct "
            "connection: " + ", ".join(sessionful)
        )


async def _run_plans(host: RunHost, r: RunRequest, run_id: str,
                     first: Sequence[TenantPlan], work: Sequence[TenantPlan]) -> Report:
    """Run the recorded run *run_id*: migrate *first* (the shared schema), then, unless it
    failed, *work*; write each outcome to the ledger as it comes, record the end. The
    tenants refused are not touched and end as their outcome says (failed); the other
    plans have nothing to do (skipped)."""
    pool, control_schema, stop, on_outcome = (host.pool, host.control_schema, host.stop,
                                              host.on_outcome)
    refused, plans, target, command, t0 = r.refused, r.plans, r.target, r.command, r.t0
    writer = LedgerWriter(pool, control_schema, run_id)
    callback_error: list[Exception] = []

    async def outcome_done(outcome: TenantOutcome) -> None:
        writer.add(outcome)
        if on_outcome is not None:
            try:
                result = on_outcome(outcome)
                if result is not None:
                    await result
            except Exception as exc:
                # The application's error stops the run; it gets it back as itself.
                callback_error.append(exc)
                raise

    for outcome in refused.values():
        await outcome_done(outcome)
    executor = Executor(pool, host.options, run_id=run_id, on_outcome=outcome_done,
                        direction=r.direction, on_cancelled=writer.add,
                        between_tenants=writer.between_tenants)
    stop.executor = executor
    executor.count_failures(len(refused))
    if stop.requested:
        executor.stop()
    status = "failed"
    try:
        async with writer:
            before = await executor.run(first, None) if first else []
            if all(o.status == OutcomeStatus.SUCCEEDED for o in before):
                outcomes = await executor.run(work, target)
            else:
                log.error("a shared migration failed: no tenant was started", run_id=run_id)
                outcomes = []
        by_tenant = {o.tenant: o for o in outcomes}
        waiting = {p.tenant for p in work}  # not started: a shared migration failed
        ordered = (*before, *(
            by_tenant.get(p.tenant) or refused.get(p.tenant)
            or TenantOutcome(p.tenant, OutcomeStatus.PENDING if p.tenant in waiting
                             else OutcomeStatus.SKIPPED,
                             p.current, p.current, target)
            for p in plans
        ))
        report = Report(command, run_id, target, ordered, time.perf_counter() - t0,
                        interrupted=executor.stopping and stop.requested)
        status = ("interrupted" if report.interrupted
                  else "succeeded" if report.ok else "failed")
        return report
    except BaseException:
        status = "interrupted"
        if callback_error:
            raise callback_error[0]  # noqa: B904 - the group it came in is the context
        raise
    finally:
        stop.executor = None
        await end_run(pool, control_schema, run_id, status)
        if host.retention_ms is not None:
            await prune_old_runs(pool, control_schema, host.retention_ms)




async def run_and_ledger(pool: Any, control_schema: str,
                         run_id: str | None) -> tuple[RunRecord, list[LedgerRow]]:
    """A run (default: the latest) and its ledger rows; :class:`TargetError` if none."""
    with database_refusal("reading the control schema"):
        async with pool.acquire() as conn:
            run = await read_run(conn, control_schema, run_id)
            if run is None:
                raise TargetError(f"no run {run_id}" if run_id else "no run recorded yet")
            return run, await read_ledger(conn, control_schema, run.run_id)


async def unfinished(pool: Any, control_schema: str, run_id: str | None,
                     shared_target: str) -> tuple[RunRecord, list[str]]:
    """A run (default: the latest) and its failed and unfinished tenants that still exist.

    The shared schema's row (a failed shared migration) is not a tenant: upgrade applies
    what the shared schema still needs before any tenant anyway."""
    run, rows = await run_and_ledger(pool, control_schema, run_id)
    todo = [row.tenant for row in rows if row.status in ("failed", "pending")
            and row.tenant != shared_target]
    if not todo:
        return run, []
    async with pool.acquire() as conn:
        present = await existing(conn, todo)
    gone = [t for t in todo if t not in present]
    todo = [t for t in todo if t in present]
    if gone:
        if not todo:
            # Not "nothing to resume" (exit 0): the run did leave these unfinished.
            raise TargetError(f"run {run.run_id}: its unfinished tenant schema(s) no "
                              f"longer exist (dropped or renamed?): {listed(gone)}")
        log.warning("unfinished tenants of the run no longer exist", run_id=run.run_id,
                    tenants=gone)
    return run, todo


async def baseline_run(
    host: RunHost, tenants: Sequence[str], histories: Mapping[str, Mapping[int, str] | None],
    adopted: Sequence[Migration], version: int, arguments: dict[str, Any], t0: float,
) -> Report:
    """Record a ``baseline`` run and in it *adopted* in each tenant that lacks some of
    them (see :mod:`tenantmig.baseline`), ``concurrency`` tenants at once."""
    versions = {m.version for m in adopted}
    todo = {t for t in tenants if not versions <= set(histories[t] or {})}
    current = {t: max(h) if (h := histories[t]) else None for t in tenants}
    pool, control_schema = host.pool, host.control_schema
    run_id = await begin_run(
        pool, control_schema, host.prefix, command="baseline", target=version,
        arguments=arguments, resumed_from=None,
        tenants=[(t, "pending" if t in todo else "skipped", current[t], version)
                 for t in tenants])
    outcomes: dict[str, TenantOutcome] = {}
    status = "failed"
    limiter = anyio.CapacityLimiter(host.options.concurrency)
    try:
        async with LedgerWriter(pool, control_schema, run_id) as writer:

            async def one(tenant: str) -> None:
                async with limiter, pool.acquire() as conn:
                    outcome = await baseline.record(conn, tenant, adopted, run_id, version)
                outcomes[tenant] = outcome
                writer.add(outcome)

            async with anyio.create_task_group() as tg:
                for tenant in tenants:
                    if tenant in todo:
                        tg.start_soon(one, tenant)
        report = Report("baseline", run_id, version, tuple(
            outcomes.get(t)
            or TenantOutcome(t, OutcomeStatus.SKIPPED, current[t], current[t], version)
            for t in tenants), time.perf_counter() - t0)
        status = "succeeded" if report.ok else "failed"
        return report
    finally:
        await end_run(pool, control_schema, run_id, status)
