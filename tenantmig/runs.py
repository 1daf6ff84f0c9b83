"""A run's life in the control schema: its id, its recorded start (with a ledger row per
targeted tenant) and end; and the refusal of a command by the database itself."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import asyncpg
import structlog

from . import baseline, control
from ._exceptions import DatabaseUnavailable
from .executor import ExecOptions, Executor, OutcomeCallback
from .ledger import LedgerWriter, finish_run, persistently, start_run
from .outcome import Direction, OutcomeStatus, TenantOutcome
from .plan import TenantPlan
from .report import Report
from .source import Migration

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


class StopSwitch:
    """A stop asked for from outside a run (a signal): the run starts no new tenant."""

    def __init__(self) -> None:
        self.requested = False
        self.executor: Executor | None = None

    def request(self) -> None:
        self.requested = True
        if self.executor is not None:
            self.executor.stop()


async def run_plans(
    pool: Any,
    options: ExecOptions,
    control_schema: str,
    run_id: str,
    stop: StopSwitch,
    *,
    plans: Sequence[TenantPlan],
    work: Sequence[TenantPlan],
    first: Sequence[TenantPlan] = (),
    target: int | None,
    direction: Direction,
    command: str,
    refused: dict[str, TenantOutcome],
    on_outcome: OutcomeCallback | None,
    t0: float,
) -> Report:
    """Run the recorded run *run_id*: migrate *first* (the shared schema), then, unless it
    failed, *work*; write each outcome to the ledger as it comes, record the end. The
    tenants in *refused* are not touched and end as their outcome says (failed); the other
    *plans* have nothing to do (skipped)."""
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
    executor = Executor(pool, options, run_id=run_id, on_outcome=outcome_done,
                        direction=direction, on_cancelled=writer.add,
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


async def baseline_run(
    pool: Any, concurrency: int, control_schema: str, run_id: str, tenants: Sequence[str],
    todo: set[str], adopted: Sequence[Migration], version: int,
    current: dict[str, int | None], t0: float,
) -> Report:
    """Run the recorded baseline run *run_id*: record *adopted* in each tenant of *todo*
    (see :mod:`tenantmig.baseline`), *concurrency* tenants at once."""
    outcomes: dict[str, TenantOutcome] = {}
    status = "failed"
    limiter = anyio.CapacityLimiter(concurrency)
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
