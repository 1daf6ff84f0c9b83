"""SQL migrations each in its own transaction, all in one call of the apply procedure
(which COMMITs after each): SQL a batch cannot hold, and any SQL through PgBouncer in
transaction mode."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from .. import history
from .._retry import lock_poll
from ..source import Migration, Step
from ._connection import is_closed
from ._context import Progress, TenantRun
from ._procedure import call


async def apply(ctx: TenantRun, conn: Any, migrations: Sequence[Migration],
                progress: Progress) -> None:
    """Apply *migrations*, recording in *progress* what committed. The procedure stops
    early while another runner holds the tenant: wait, then go on from where it
    stopped."""
    undo = ctx.run.undo
    todo = [(m, ctx.run.step(m)) for m in migrations]
    backoff = lock_poll()
    while todo:
        progress.version = todo[0][0].version
        try:
            done, next_index = await call(ctx, conn, todo, undo, commit=True)
        except Exception:
            await _settle(ctx, conn, todo, progress)
            raise
        progress.done.extend(done)
        todo = todo[next_index - 1 :]
        if todo:
            await backoff.sleep()


async def _settle(
    ctx: TenantRun,
    conn: Any,
    todo: Sequence[tuple[Migration, Step]],
    progress: Progress,
) -> None:
    """After a failed call: which of *todo* committed before the error, and which
    version failed (the first one not done)."""
    undo = ctx.run.undo
    try:
        if await is_closed(conn):
            return
        present = await history.runs_of(conn, ctx.tenant, (m.version for m, _ in todo),
                                        session=ctx.run.options.session) or {}
    except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
        return
    for migration, _ in todo:
        if (migration.version in present) != undo:
            if migration.version not in progress.done:
                progress.done.append(migration.version)
        else:
            progress.version = migration.version
            return
