"""Migrations in one transaction the client holds: a Python migration, SQL with its own
statement timeout, and ``--atomic-tenant`` groups a batch cannot carry."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from ..durations import format_ms
from ..source import Migration, Step
from ._context import Progress, TenantRun
from ._procedure import in_transaction, is_applied, lock_and_prepare, record


async def apply(ctx: TenantRun, conn: Any, migrations: Sequence[Migration],
                progress: Progress) -> None:
    """Apply *migrations* in one transaction, recording in *progress* what committed."""
    undo = ctx.run.undo
    steps = [(m, ctx.run.step(m)) for m in migrations]
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
                done.extend(await apply_sql(ctx, conn, [(migration, step)], undo))
            elif await _python(ctx, conn, migration, step):
                done.append(migration.version)
    progress.done.extend(done)


async def apply_sql(
    ctx: TenantRun, conn: Any, steps: Sequence[tuple[Migration, Step]], undo: bool
) -> list[int]:
    """Transactional SQL inside the caller's transaction."""
    return await in_transaction(ctx, conn, steps, undo)


async def _python(ctx: TenantRun, conn: Any, migration: Migration, step: Step) -> bool:
    """A transactional Python step; the caller holds the transaction."""
    await lock_and_prepare(ctx, conn, step)
    if await is_applied(ctx, conn, migration) != ctx.run.undo:
        return False
    assert step.python is not None
    t0 = time.perf_counter()
    await step.python(ctx.migration_context(conn, migration, step))
    await record(ctx, conn, migration, time.perf_counter() - t0)
    return True
