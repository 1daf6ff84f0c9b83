"""A migration outside any transaction (``CREATE INDEX CONCURRENTLY``, ...): statement
by statement under the tenant's session-level advisory lock, then recorded."""

from __future__ import annotations

import time
from typing import Any

import asyncpg

from .._retry import lock_poll
from .._sql import quote_ident
from ..control import tenant_lock_key
from ..durations import format_ms
from ..source import Migration, Step
from ._connection import is_closed
from ._context import Progress, TenantRun
from ._diagnostics import INVALID_INDEXES
from ._procedure import is_applied, lock_and_prepare, record


async def apply(ctx: TenantRun, conn: Any, migration: Migration, progress: Progress) -> None:
    """Apply *migration*, recording in *progress* whether it committed."""
    step = ctx.run.step(migration)
    progress.version = migration.version
    if await _run(ctx, conn, migration, step):
        progress.done.append(migration.version)


async def _run(ctx: TenantRun, conn: Any, migration: Migration, step: Step) -> bool:
    """Statement by statement under the tenant's session-level advisory lock."""
    tenant = ctx.tenant
    key = tenant_lock_key(tenant)
    backoff = lock_poll()
    while not await conn.fetchval("SELECT pg_catalog.pg_try_advisory_lock($1)", key):
        await backoff.sleep()
    try:
        present = await is_applied(ctx, conn, migration)
        if present != ctx.run.undo:
            return False
        # Session-wide, for the statements that each commit on their own; put back (RESET)
        # below, before the connection serves another tenant.
        await conn.execute(
            "SELECT pg_catalog.set_config('search_path', $2, false), "
            "pg_catalog.set_config('lock_timeout', $1, false)",
            ctx.run.lock_timeout(step), ctx.search_path,
        )
        if step.statement_timeout_ms is not None:
            await conn.execute(
                "SELECT pg_catalog.set_config('statement_timeout', $1, false)",
                format_ms(step.statement_timeout_ms),
            )
        await _drop_invalid_indexes(ctx, conn, step)
        t0 = time.perf_counter()
        if step.python is not None:
            await step.python(ctx.migration_context(conn, migration, step))
        else:
            for index in range(len(step.statements)):
                await conn.execute(step.render_statement(index, tenant))
        seconds = time.perf_counter() - t0
        async with conn.transaction():
            await lock_and_prepare(ctx, conn, step)
            await record(ctx, conn, migration, seconds)
        return True
    finally:
        if not await is_closed(conn):
            try:
                await conn.execute("RESET search_path; RESET lock_timeout; "
                                   "RESET statement_timeout")
                await conn.execute("SELECT pg_catalog.pg_advisory_unlock($1)", key)
            except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
                await conn.close()


async def _drop_invalid_indexes(ctx: TenantRun, conn: Any, step: Step) -> None:
    """What an earlier attempt's failed index build left: drop it before building again."""
    if not step.concurrent_indexes:
        return
    tenant = ctx.tenant
    rows = await conn.fetch(INVALID_INDEXES, tenant, list(step.concurrent_indexes))
    for (name,) in rows:
        ctx.log.warning("dropping INVALID index left by an earlier attempt", index=name)
        await conn.execute(
            f"DROP INDEX CONCURRENTLY IF EXISTS {quote_ident(tenant)}.{quote_ident(name)}"
        )
