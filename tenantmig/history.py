"""Each tenant's ``tenantmig_history``: its shape, and reading it for many tenants at once."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio

from ._sql import quote_ident
from .source import DESCRIPTION_MAX

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

# Reading many tenants' history tables: through the control schema's reader function
# where it exists (one call per chunk, each table read by its own small statement on the
# server), else as UNION ALL queries. Reading 10,000 tenants over 8 connections took
# 1.4 s as UNION ALLs of 500 tables, 0.7 s of 32, and 0.3-0.4 s through the function
# (bench/RESULTS.md, "no-op"): PostgreSQL plans a UNION ALL of n tables in more than linear
# time, and few large queries leave most connections idle.
READER_FUNCTION = "read_history_v1"
_READER_CHUNK = 250
_UNION_CHUNK = 32


def reader_function(control_schema: str) -> str:
    return f"{quote_ident(control_schema)}.{READER_FUNCTION}"


def reader_sql(control_schema: str) -> str:
    """The reader function: (index, version, checksum) of the history tables it is given
    (quoted, schema-qualified), in one consistent snapshot (STABLE), read-only."""
    return f"""
CREATE OR REPLACE FUNCTION {reader_function(control_schema)}(p_tables text[])
RETURNS TABLE (i integer, version bigint, checksum text)
LANGUAGE plpgsql STABLE AS $tenantmig$
BEGIN
    FOR v_i IN 1 .. coalesce(pg_catalog.array_length(p_tables, 1), 0) LOOP
        RETURN QUERY EXECUTE
            'SELECT $1, version::bigint, checksum::text FROM ' || p_tables[v_i] USING v_i;
    END LOOP;
END
$tenantmig$
"""


def table(schema: str) -> str:
    """The schema-qualified, quoted history table of *schema*."""
    return f"{quote_ident(schema)}.{HISTORY_TABLE}"


def insert_sql(schema: str) -> str:
    """Parameters: version, description, checksum, duration_ms, run_id."""
    return (
        f"INSERT INTO {table(schema)} "
        "(version, description, checksum, applied_at, duration_ms, run_id) "
        "VALUES ($1, $2, $3, now(), $4, $5)"
    )


def delete_sql(schema: str) -> str:
    return f"DELETE FROM {table(schema)} WHERE version = $1"


# The tenants with a history table, and whether this role may call the reader function
# (a role without USAGE on the control schema, or a database without one, reads as
# UNION ALLs).
_SURVEY = """
SELECT ARRAY(
    SELECT n.nspname
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = $1 AND c.relkind IN ('r', 'p') AND n.nspname = ANY($2::text[])
), EXISTS (
    SELECT 1
    FROM pg_catalog.pg_proc p
    JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
    WHERE n.nspname = $3 AND p.proname = $4
      AND pg_catalog.has_schema_privilege(n.oid, 'USAGE')
      AND pg_catalog.has_function_privilege(p.oid, 'EXECUTE')
)
"""


async def read_histories(
    pool: Any,
    tenants: Sequence[str],
    *,
    concurrency: int = 4,
    control_schema: str | None = None,
) -> dict[str, dict[int, str] | None]:
    """version -> checksum for each tenant; None where the tenant has no history table."""
    async with pool.acquire() as conn:
        names, has_reader = await conn.fetchrow(
            _SURVEY, HISTORY_TABLE, list(tenants), control_schema, READER_FUNCTION
        )
    with_history = sorted(names)
    result: dict[str, dict[int, str] | None] = {t: None for t in tenants}
    for t in with_history:
        result[t] = {}
    if not with_history:
        return result

    workers = max(1, concurrency)
    if has_reader:
        assert control_schema is not None
        size = min(_READER_CHUNK, -(-len(with_history) // workers))
        reader = f"SELECT i, version, checksum FROM {reader_function(control_schema)}($1)"
    else:
        size = _UNION_CHUNK
    chunks = [with_history[i : i + size] for i in range(0, len(with_history), size)]
    limiter = anyio.CapacityLimiter(workers)

    async def read(chunk: list[str]) -> None:
        async with limiter, pool.acquire() as conn:
            if has_reader:
                rows = await conn.fetch(reader, [table(t) for t in chunk])
            else:
                # The index is ours (enumerate), so it is safe inline; names are quoted.
                rows = await conn.fetch(" UNION ALL ".join(
                    f"SELECT {i} AS i, version, checksum FROM {table(t)}"
                    for i, t in enumerate(chunk, start=1)
                ))
        for i, version, digest in rows:
            entry = result[chunk[i - 1]]
            assert entry is not None
            entry[version] = digest

    async with anyio.create_task_group() as tg:
        for chunk in chunks:
            tg.start_soon(read, chunk)
    return result
