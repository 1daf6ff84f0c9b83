"""What a tenant that failed for good is told, and left with: who held the locks it
waited for, and no INVALID index from a failed ``CREATE INDEX CONCURRENTLY``."""

from __future__ import annotations

import re
from collections.abc import Sequence

import asyncpg

from .._sql import quote_ident
from ..control import tenant_lock_key
from ._connection import WorkerConnection

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

INVALID_INDEXES = """
SELECT c.relname FROM pg_catalog.pg_index i
JOIN pg_catalog.pg_class c ON c.oid = i.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relname = ANY($2::text[]) AND NOT i.indisvalid
"""
"""The INVALID ones among indexes *$2* of schema *$1*."""


async def blockers(box: WorkerConnection, tenant: str, *, snapshots: bool = False) -> str:
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


async def drop_leftover_indexes(box: WorkerConnection, tenant: str,
                                names: Sequence[str]) -> list[str]:
    """After a no-transaction index build failed for good: drop the INVALID index it
    left (it slows every write to the table) if the tenant is still ours to touch;
    returns those left in place. A plain DROP INDEX under a short lock timeout:
    DROP INDEX CONCURRENTLY would wait for the same old snapshot the build did."""
    try:
        conn = await box.get()
        invalid = [r[0] for r in await conn.fetch(INVALID_INDEXES, tenant, list(names))]
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
            return [r[0] for r in await conn.fetch(INVALID_INDEXES, tenant, list(names))]
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError):
            return list(names)


class WithNote(Exception):
    """A failure with a note of what it left behind."""

    def __init__(self, cause: BaseException, note: str) -> None:
        self.sqlstate = getattr(cause, "sqlstate", None)
        super().__init__(f"{message(cause)}; {note}")


class LockTimeout(Exception):
    """A lock timeout that ran out of retries, with who was holding the locks."""

    sqlstate = "55P03"

    def __init__(self, cause: BaseException, blockers: str) -> None:
        super().__init__(message(cause) + (f"; blocked by {blockers}" if blockers else ""))


def message(exc: BaseException) -> str:
    """What the ledger, the logs and the summary say of *exc*: the server's message with
    its DETAIL, HINT and CONTEXT (which trigger function, which line), each cut to a
    sensible length; the lines of tenantmig's own functions are left out of the CONTEXT."""
    if isinstance(exc, LockTimeout | WithNote):
        return str(exc)
    if isinstance(exc, asyncpg.PostgresError):
        text = str(getattr(exc, "message", None) or exc)
        detail = getattr(exc, "detail", None)
        if detail:
            text += f" ({_cut(detail, _DETAIL_MAX)})"
        hint = getattr(exc, "hint", None)
        if hint:
            text += f"; HINT: {_cut(hint, _DETAIL_MAX)}"
        context = _their_context(getattr(exc, "context", None))
        if context:
            text += f"; CONTEXT: {context}"
        return text
    return f"{type(exc).__name__}: {exc}"


_DETAIL_MAX = 300
_CONTEXT_LINE_MAX = 160
_CONTEXT_MAX = 600
# The batch's and the procedure's own frames: every migration's error passes through them.
_OWN_FRAME = re.compile(r"PL/pgSQL function .*\.(?:apply|claim|expect)_v\d+\(")


def _their_context(context: str | None) -> str:
    """The CONTEXT lines that are the migration's (its functions, triggers, statements),
    newest first as PostgreSQL gives them, joined with " <- "."""
    if not context:
        return ""
    lines = [line.strip() for line in context.splitlines() if line.strip()]
    lines = [line for line in lines if not _OWN_FRAME.search(line)]
    # What EXECUTE ran, when that was the migration itself: the ledger names the version.
    if lines and lines[-1].startswith("SQL statement") and len(lines) > 1:
        lines = lines[:-1]
    elif len(lines) == 1 and lines[0].startswith("SQL statement"):
        lines = []
    return _cut(" <- ".join(_cut(line, _CONTEXT_LINE_MAX) for line in lines), _CONTEXT_MAX)


def _cut(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
