"""The control schema's apply procedure, called from the paths that do not batch, and
the history check and record around a step the client runs itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .. import history
from .._retry import lock_poll
from .._sql import quote_ident, text_array
from ..control import apply_procedure, tenant_lock_key
from ..source import Migration, Step
from ._context import TenantRun


def call_statement(control_schema: str) -> str:
    """The CALL of the apply procedure (:func:`call` gives its arguments)."""
    return (
        f"CALL {apply_procedure(control_schema)}"
        "($1::text, $2::bigint, $3::text, $4::text[], $5::text[]::bigint[], $6::text[], "
        "$7::text[], $8::text[], $9::boolean, $10::boolean, $11::text)"
    )


async def call(
    ctx: TenantRun,
    conn: Any,
    steps: Sequence[tuple[Migration, Step]],
    undo: bool,
    *,
    commit: bool,
    lock_timeout: str | None = None,
) -> tuple[list[int], int]:
    """One CALL of the apply procedure: (versions done, index of the first version
    not processed — at most ``len(steps)`` while another runner holds the tenant)."""
    run, tenant = ctx.run, ctx.tenant
    row = await conn.fetchrow(
        run.apply_call,
        quote_ident(tenant),
        tenant_lock_key(tenant),
        run.run_id,
        [run.lock_timeout(s) for _, s in steps] if steps else [lock_timeout],
        text_array(m.version for m, _ in steps),
        [m.description for m, _ in steps],
        [m.checksum for m, _ in steps],
        [s.render(tenant) for _, s in steps],
        undo,
        commit,
        ctx.search_path,
    )
    return list(row["p_done"]), int(row["p_next"])


async def in_transaction(
    ctx: TenantRun,
    conn: Any,
    steps: Sequence[tuple[Migration, Step]],
    undo: bool,
    lock_timeout: str | None = None,
) -> list[int]:
    """The apply procedure inside the caller's transaction, trying again while another
    runner holds the tenant (it holds no snapshot between two tries)."""
    backoff = lock_poll()
    while True:
        done, next_index = await call(ctx, conn, steps, undo, commit=False,
                                      lock_timeout=lock_timeout)
        if next_index > len(steps):
            return done
        await backoff.sleep()


async def lock_and_prepare(ctx: TenantRun, conn: Any, step: Step) -> None:
    """Tenant lock, lock timeout, empty search_path, history table: the apply
    procedure with nothing to apply."""
    await in_transaction(ctx, conn, [], False, ctx.run.lock_timeout(step))


async def is_applied(ctx: TenantRun, conn: Any, migration: Migration) -> bool:
    """Whether the tenant's history holds *migration*."""
    return await history.is_applied(conn, ctx.tenant, migration.version,
                                    session=ctx.run.options.session)


async def record(ctx: TenantRun, conn: Any, migration: Migration, seconds: float) -> None:
    """The history row of a step the client ran: added going up, removed going down."""
    session = ctx.run.options.session
    if ctx.run.undo:
        await history.remove(conn, ctx.tenant, migration.version, session=session)
    else:
        await history.add(conn, ctx.tenant, migration, seconds=seconds,
                          run_id=ctx.run.run_id, session=session)
