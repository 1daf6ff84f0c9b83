"""One unit of a tenant, applied by its path with retries: transient errors are tried
again with exponential backoff and jitter; an error that stays gets the diagnostics of
what was blocking and what was left behind."""

from __future__ import annotations

import contextlib
import random
from typing import TYPE_CHECKING, Any

import anyio

from .. import batch
from .._retry import is_connection_loss, is_lock_timeout, is_transient
from . import _batch, _each, _no_transaction, _transaction
from ._connection import is_closed
from ._context import Progress, TenantRun
from ._diagnostics import LockTimeout, WithNote, blockers, drop_leftover_indexes, message
from ._units import Unit, UnitKind

if TYPE_CHECKING:
    from tenacity import RetryCallState


async def apply_unit(ctx: TenantRun, unit: Unit, progress: Progress
                     ) -> tuple[int, BaseException | None]:
    """Apply one unit with retries: (attempts, final error or None); *progress* says
    which versions were committed and which one was being applied."""
    run, box = ctx.run, ctx.box
    options = run.options
    attempts = 0

    async def attempt() -> None:
        nonlocal attempts
        attempts += 1
        conn = await box.get()
        if not box.primed and options.session:
            await conn.execute(batch.PRIME_SQL, *run.prime_args)
            box.primed = True
        try:
            await _apply(ctx, conn, unit, progress)
        except Exception as exc:
            if is_connection_loss(exc) or await is_closed(conn):
                with contextlib.suppress(Exception):
                    conn.terminate()
                await box.discard()
            raise

    def warn(exc: BaseException, attempt_number: int, wait: float) -> None:
        ctx.log.warning(
            "transient error, retrying",
            version=progress.version,
            attempt=attempt_number,
            sqlstate=getattr(exc, "sqlstate", None),
            error=message(exc),
            wait=round(wait, 3),
        )

    def before_sleep(state: RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        if exc is not None:
            warn(exc, state.attempt_number + 1, state.upcoming_sleep)

    def stop(state: RetryCallState) -> bool:
        """``--retries`` retries after the first attempt; for a lost server, also keep
        trying for ``reconnect_window`` seconds, so a restart or failover does not fail
        the run."""
        if state.attempt_number >= options.retries:
            exc = state.outcome.exception() if state.outcome else None
            if exc is None or not is_connection_loss(exc):
                return True
            return (state.seconds_since_start or 0.0) >= options.reconnect_window
        return False

    try:
        # The first attempt runs bare: the retry machinery costs more than the
        # bookkeeping it protects, and almost every migration succeeds first time.
        try:
            await attempt()
            return attempts, None
        except Exception as exc:
            if not is_transient(exc) or not (options.retries > 0 or is_connection_loss(exc)):
                raise
            wait = random.uniform(0, options.retry_initial_wait)
            warn(exc, 1, wait)
            await anyio.sleep(wait)
        # Imported on the first retry only: most runs never need it (start-up time).
        from tenacity import AsyncRetrying, retry_if_exception, wait_random_exponential

        retrying = AsyncRetrying(
            retry=retry_if_exception(is_transient),
            stop=stop,
            wait=wait_random_exponential(
                multiplier=options.retry_initial_wait,
                max=options.retry_max_wait,
            ),
            before_sleep=before_sleep,
            reraise=True,
        )
        async for retry in retrying:
            with retry:
                await attempt()
    except Exception as exc:
        return attempts, await _diagnosed(ctx, unit, exc)
    return attempts, None


async def _apply(ctx: TenantRun, conn: Any, unit: Unit, progress: Progress) -> None:
    """One attempt at *unit*, by the path its kind says."""
    kind = unit.kind
    if kind is UnitKind.BATCH or (kind is UnitKind.ATOMIC_BATCH and not ctx.facts.unlocated):
        try:
            await _batch.apply(ctx, conn, unit, progress)
        except _batch.Unlocated:
            # Nothing of the group committed, and the error did not say where it
            # happened: apply the group again, one procedure call per migration, which
            # names the failing one (failing tenants only; a deterministic error comes
            # back, located).
            ctx.facts.unlocated = True
            await _transaction.apply(ctx, conn, unit.migrations, progress)
    elif kind is UnitKind.EACH:
        await _each.apply(ctx, conn, unit.migrations, progress)
    elif kind is UnitKind.NO_TRANSACTION:
        (migration,) = unit.migrations
        await _no_transaction.apply(ctx, conn, migration, progress)
    else:  # SINGLE, ATOMIC, and an ATOMIC_BATCH that could not say where it failed
        await _transaction.apply(ctx, conn, unit.migrations, progress)


async def _diagnosed(ctx: TenantRun, unit: Unit, exc: BaseException) -> BaseException:
    """The error a unit failed with for good, with who blocked it and what it left."""
    indexes = [i for m in unit.migrations if (s := ctx.run.step_or_none(m)) is not None
               for i in s.concurrent_indexes]
    if is_lock_timeout(exc):
        exc = LockTimeout(exc, await blockers(ctx.box, ctx.tenant, snapshots=bool(indexes)))
    if indexes:
        left = await drop_leftover_indexes(ctx.box, ctx.tenant, indexes)
        if left:
            exc = WithNote(exc, "INVALID index(es) left in place, dropped before the "
                           "next attempt: " + ", ".join(left))
    return exc

