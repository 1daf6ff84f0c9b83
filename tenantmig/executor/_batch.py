"""Plain SQL migrations in one batch, one round trip per tenant (see ``tenantmig.batch``):
each in its own transaction, or all in one (``--atomic-tenant``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from .. import batch, history
from .._retry import is_connection_loss, lock_poll
from .._sql import UnsafeTenantName
from ..control import (
    CLAIM_FUNCTION,
    EXPECT_FUNCTION,
    SQLSTATE_BUSY,
    SQLSTATE_CHANGED,
    tenant_lock_key,
)
from ..source import Migration, Step
from ._context import Progress, TenantRun
from ._units import Unit, UnitKind

# How often a tenant's batch may find its history changed by another runner in a row.
_MAX_REPLANS = 100


class Unlocated(Exception):
    """An ``--atomic-tenant`` batch rolled back on an error without a position."""


async def apply(ctx: TenantRun, conn: Any, unit: Unit, progress: Progress) -> None:
    """The unit's migrations in one batch. While another runner holds the tenant, wait
    and try again; when the history changed since it was read, go on from what is left;
    on a real error, record what committed and raise (:class:`Unlocated` when an
    all-or-nothing batch cannot say which migration failed)."""
    tenant, facts = ctx.tenant, ctx.facts
    undo = ctx.run.undo
    atomic = unit.kind is UnitKind.ATOMIC_BATCH
    key = tenant_lock_key(tenant)
    todo = [(m, ctx.run.step(m)) for m in unit.migrations]
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
    if refused is not None and (not items or atomic):
        progress.version = refused[0]
        raise refused[1]
    todo = [(m, s) for m, s in todo if m.version in items]
    backoff = lock_poll()
    replans = 0
    if not facts.known:
        # An earlier attempt lost its connection: what did it commit?
        todo, _, _ = await _read_back(ctx, conn, todo, progress)
    while todo:
        progress.version = todo[0][0].version
        work = batch.build(
            ctx.run.options.control_schema,
            tenant,
            key,
            [items[m.version] for m, _ in todo],
            undo=undo,
            has_history=facts.has_history,
            atomic=atomic,
            search_path=ctx.search_path,
        )
        try:
            await conn.execute(work.sql)
        except asyncpg.PostgresError as exc:
            facts.known = False
            if is_connection_loss(exc):
                raise
            if conn.is_in_transaction():
                await conn.execute("ROLLBACK")
            if _raised_by(exc, SQLSTATE_BUSY, CLAIM_FUNCTION):
                facts.known = True
                await backoff.sleep()
                continue
            await conn.execute(batch.UNLOCK_IF_HELD, key)
            had_history = facts.has_history
            todo, ours, foreign = await _read_back(ctx, conn, todo, progress)
            # Another run's rows mean another runner got there between our read and
            # our lock (the re-read is skipped for a tenant without a history table:
            # creating it then fails instead).
            appeared = not had_history and facts.has_history and not ours
            if _raised_by(exc, SQLSTATE_CHANGED, EXPECT_FUNCTION) or foreign or appeared:
                replans += 1
                if replans > _MAX_REPLANS:
                    raise
                continue
            failing = work.version_at(getattr(exc, "position", None))
            left = [m.version for m, _ in todo]
            if atomic and left and failing not in left:
                raise Unlocated from exc
            progress.version = failing if failing in left else (
                left[0] if left else progress.version)
            raise
        except BaseException:
            facts.known = False
            raise
        progress.done.extend(m.version for m, _ in todo)
        break
    if refused is not None:
        progress.version = refused[0]
        raise refused[1]


async def _read_back(
    ctx: TenantRun,
    conn: Any,
    todo: Sequence[tuple[Migration, Step]],
    progress: Progress,
) -> tuple[list[tuple[Migration, Step]], bool, bool]:
    """After a batch ended early: record in *progress* the versions this run
    committed, update the tenant's facts; return what is left to do, whether this run
    committed any of *todo*, and whether another run did."""
    undo, run_id, facts = ctx.run.undo, ctx.run.run_id, ctx.facts
    found = await history.runs_of(conn, ctx.tenant, (m.version for m, _ in todo),
                                  session=ctx.run.options.session)
    facts.has_history = found is not None
    present = found or {}
    facts.known = True
    runs = {m.version: present[m.version] for m, _ in todo if m.version in present}
    ours = ([m.version for m, _ in todo if m.version not in present] if undo
            else [v for v, run in runs.items() if run == run_id])
    foreign = not undo and any(run != run_id for run in runs.values())
    progress.done.extend(v for v in ours if v not in progress.done)
    left = [(m, s) for m, s in todo if (m.version in present) == undo]
    return left, bool(ours), foreign


def _raised_by(exc: asyncpg.PostgresError, sqlstate: str, function: str) -> bool:
    """Whether *exc* is our own function's signal, not a migration raising the same code."""
    return exc.sqlstate == sqlstate and function in (getattr(exc, "context", None) or "")
