"""The fan-out over tenants, and each tenant's bookkeeping: its units in order, how far
it got, its outcome."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import anyio
import structlog

from .. import batch
from ..durations import format_ms
from ..outcome import Direction, OutcomeStatus, TenantOutcome
from ..plan import TenantPlan
from ._attempts import apply_unit
from ._connection import WorkerConnection
from ._context import Progress, Run, TenantFacts, TenantRun, lock_timeout
from ._diagnostics import message
from ._options import ExecOptions
from ._procedure import call_statement
from ._units import step_for, units

log = structlog.get_logger("tenantmig")

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
        self._run_id = run_id
        self._on_outcome = on_outcome
        self._direction = Direction(direction)
        self._stopping = False
        self._failures = 0
        self._apply_call = call_statement(options.control_schema)

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
        options, direction = self._options, self._direction
        run = Run(
            run_id=self._run_id,
            direction=direction,
            options=options,
            prime_args=batch.prime_args(
                self._run_id,
                format_ms(options.lock_timeout_ms),
                {
                    (m.version, m.description, m.checksum,
                     None if step.lock_timeout_ms is None else lock_timeout(options, step))
                    for p in plans for m in p.pending
                    for step in [step_for(m, direction)]
                    if step is not None and step.batchable
                },
            ),
            apply_call=self._apply_call,
        )

        async def worker() -> None:
            box = WorkerConnection(self._pool)
            try:
                await work(box)
            finally:
                await box.release()

        async def work(box: WorkerConnection) -> None:
            while not self._stopping:
                plan = next(queue, None)
                if plan is None:
                    return
                outcome = await self._tenant(run, plan, target, box)
                outcomes[plan.tenant] = outcome
                if options.session and self._may_set(plan):
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

        workers = max(1, min(options.concurrency, len(plans)))
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
        steps = (step_for(m, self._direction) for m in plan.pending)
        return any(step is not None and not step.batchable for step in steps)

    async def _tenant(self, run: Run, plan: TenantPlan, target: int | None,
                      box: WorkerConnection) -> TenantOutcome:
        started_at = datetime.now(UTC)
        t0 = time.perf_counter()
        up = run.direction is Direction.UP
        ctx = TenantRun(run, plan.tenant, log.bind(run_id=run.run_id, tenant=plan.tenant),
                        box, TenantFacts(plan.has_history))
        remaining = set(plan.applied)
        reached = plan.current
        applied: list[int] = []
        attempts = 0
        failure: tuple[int, BaseException] | None = None
        try:
            for unit in units(plan.pending, run.options.atomic_tenant, run.direction,
                              run.options.session):
                if self._on_cancelled is not None:
                    self._partial[plan.tenant] = TenantOutcome(
                        plan.tenant, OutcomeStatus.PENDING, plan.current, reached, target,
                        applied=tuple(applied), attempts=attempts, started_at=started_at,
                    )
                progress = Progress(unit.migrations[0].version)
                tries, error = await apply_unit(ctx, unit, progress)
                # The ledger's attempts: the most tries one step needed (1: no retry),
                # not a count of steps, which would vary with how migrations are grouped.
                attempts = max(attempts, tries)
                applied.extend(progress.done)
                if progress.done and up:
                    ctx.facts.has_history = True
                finished = progress.done if error is not None else [
                    m.version for m in unit.migrations
                ]
                for version in finished:
                    if up:
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
            ctx.log.error("tenant failed", version=failure[0], sqlstate=sqlstate,
                          error=message(failure[1]))
        else:
            ctx.log.debug("tenant done", applied=applied)
        return TenantOutcome(
            tenant=plan.tenant,
            status=status,
            version_before=plan.current,
            version_reached=reached,
            target=target,
            applied=tuple(applied),
            failing_version=failure[0] if failure else None,
            sqlstate=sqlstate if isinstance(sqlstate, str) else None,
            message=message(failure[1]) if failure else None,
            attempts=attempts,
            started_at=started_at,
            finished_at=datetime.now(UTC),
            seconds=time.perf_counter() - t0,
        )
