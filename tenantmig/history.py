"""Each tenant's ``tenantmig_history``: its shape, and reading it for many tenants at once."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import anyio

from ._sql import quote_ident, text_array
from .source import DESCRIPTION_MAX

if TYPE_CHECKING:
    from .source import Migration

HISTORY_TABLE = "tenantmig_history"

# Bounded varchar columns keep the widest possible row under PostgreSQL's TOAST threshold,
# so creating the table in each of 10,000 tenants creates no TOAST table and index: it
# costs about half as much as with text columns.
HISTORY_COLUMNS = (
    "version bigint PRIMARY KEY, "
    f"description varchar({DESCRIPTION_MAX}) NOT NULL, "
    "checksum varchar(64) NOT NULL, "
    # No DEFAULTs: every insert gives both, and defaults cost catalog rows per tenant.
    "applied_at timestamptz NOT NULL, "
    "duration_ms integer NOT NULL, "
    "run_id varchar(64)"
)

# How many tenants one UNION ALL query reads. PostgreSQL plans a UNION ALL of n tables in
# more than linear time, and a few large queries would leave most connections idle: over 8
# new connections, 10,000 tenants took 1.24 s in chunks of 500 and 0.77 s in chunks of 32
# (bench/RESULTS.md, "no-op"). Reading each table with its own statement in a server-side
# function was no faster (0.75 s): on new connections the cost is each table's first open.
_CHUNK = 32


def table(schema: str) -> str:
    """The schema-qualified, quoted history table of *schema*."""
    return f"{quote_ident(schema)}.{HISTORY_TABLE}"


async def fetch_once(conn: Any, query: str, *args: Any, session: bool = True) -> list[Any]:
    """Rows of *query*, whose text names one tenant's tables and so is not run again.

    Not through asyncpg's statement cache: cached, such statements pile up on the
    connection (up to 100) and their plans in the server's plan cache, which PostgreSQL
    walks at each relation invalidation to find the plans naming that relation, and
    while the tenants are migrated the other connections' DDL sends invalidations all
    the time (bench/RESULTS.md). A statement from prepare() is closed once dropped
    (asyncpg sends the Close with the connection's next new statement). *session*: the
    connections keep session state; False through PgBouncer in transaction mode, where
    the pool caches nothing and statements are unnamed, replaced by the next query.
    """
    if not session:
        return list(await conn.fetch(query, *args))
    return list(await (await conn.prepare(query)).fetch(*args))


def insert_sql(schema: str) -> str:
    """Parameters: version, description, checksum, duration_ms, run_id."""
    return (
        f"INSERT INTO {table(schema)} "
        "(version, description, checksum, applied_at, duration_ms, run_id) "
        "VALUES ($1, $2, $3, now(), $4, $5)"
    )


def delete_sql(schema: str) -> str:
    return f"DELETE FROM {table(schema)} WHERE version = $1"


# --- one tenant's history, on its own connection ---------------------------------------


async def exists(conn: Any, schema: str) -> bool:
    """Whether *schema* has its history table."""
    return bool(await conn.fetchval("SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                                    table(schema)))


async def is_applied(conn: Any, schema: str, version: int, *, session: bool = True) -> bool:
    """Whether *version* is in *schema*'s history. *session*: as for :func:`fetch_once`."""
    if not await exists(conn, schema):
        return False
    return bool(await fetch_once(
        conn, f"SELECT 1 FROM {table(schema)} WHERE version = $1", version, session=session,
    ))


async def runs_of(
    conn: Any, schema: str, versions: Iterable[int], *, session: bool = True
) -> dict[int, str | None] | None:
    """Which of *versions* are in *schema*'s history, each with the run that applied it;
    None when it has no history table. *session*: as for :func:`fetch_once`."""
    if not await exists(conn, schema):
        return None
    rows = await fetch_once(
        conn,
        f"SELECT version, run_id FROM {table(schema)} "
        "WHERE version = ANY($1::text[]::bigint[])",
        text_array(versions),
        session=session,
    )
    return {r["version"]: r["run_id"] for r in rows}


async def add(conn: Any, schema: str, migration: Migration, *, seconds: float, run_id: str,
              session: bool = True) -> None:
    """Record *migration* as applied by *run_id*, in *seconds*."""
    await fetch_once(
        conn,
        insert_sql(schema),
        migration.version,
        migration.description,
        migration.checksum,
        math.ceil(seconds * 1000),
        run_id,
        session=session,
    )


async def remove(conn: Any, schema: str, version: int, *, session: bool = True) -> None:
    """Take *version* out of the history (it was undone)."""
    await fetch_once(conn, delete_sql(schema), version, session=session)


# The schemas are found through pg_namespace's name index (``name = ANY(name[])``), their
# tables one by one through pg_class's. Comparing ``name`` to ``text[]`` instead cannot use
# the index and, in a generic plan, tries every tenant against every name: 0.6 s of one
# core at 10,000 tenants, ahead of everything else. A join of the two catalogs (or of an
# unnest) gave the planner room for generic plans of several seconds. The cast to name
# truncates names longer than the server's limit: the caller keeps exact matches only.
_WITH_HISTORY = """
SELECT n.nspname
FROM pg_catalog.pg_namespace n
WHERE n.nspname = ANY($2::text[]::name[])
  AND (SELECT c.relkind FROM pg_catalog.pg_class c
       WHERE c.relnamespace = n.oid AND c.relname = $1) IN ('r', 'p')
"""


async def read_histories(
    pool: Any, tenants: Sequence[str], *, concurrency: int = 4, session: bool = True
) -> dict[str, dict[int, str] | None]:
    """version -> checksum for each tenant; None where the tenant has no history table.
    *session*: as for :func:`fetch_once`."""
    async with pool.acquire() as conn:
        rows = await conn.fetch(_WITH_HISTORY, HISTORY_TABLE, list(tenants))
    result: dict[str, dict[int, str] | None] = {t: None for t in tenants}
    with_history = sorted(r[0] for r in rows if r[0] in result)
    for t in with_history:
        result[t] = {}

    chunks = [with_history[i : i + _CHUNK] for i in range(0, len(with_history), _CHUNK)]
    limiter = anyio.CapacityLimiter(max(1, concurrency))

    async def read(chunk: list[str]) -> None:
        # The index is ours (enumerate), so it is safe inline; names are quoted identifiers.
        query = " UNION ALL ".join(
            f"SELECT {i} AS i, version, checksum FROM {table(t)}" for i, t in enumerate(chunk)
        )
        async with limiter, pool.acquire() as conn:
            # Cached, these reads (32 tables each) took a quarter of the server's time
            # at 10,000 tenants of a later release: see fetch_once.
            for i, version, digest in await fetch_once(conn, query, session=session):
                entry = result[chunk[i]]
                assert entry is not None
                entry[version] = digest

    async with anyio.create_task_group() as tg:
        for chunk in chunks:
            tg.start_soon(read, chunk)
    return result
