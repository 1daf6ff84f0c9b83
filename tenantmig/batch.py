"""A tenant's transactional SQL migrations in one round trip, as one simple query.

The batch for one tenant reads::

    BEGIN;
    SELECT tenantmig.claim_v3(<lock key>);               -- the tenant, or SQLSTATE TM001
    CREATE TABLE "t".tenantmig_history (...);           -- no history table yet, or
    SELECT tenantmig.expect_v4(<key>, ARRAY(...), ...);  -- its re-read under the lock
    <migration 1>
    ;
    INSERT INTO "t".tenantmig_history ... ; COMMIT;
    BEGIN; <migration 2> ; INSERT ... ; COMMIT;
    ...
    SELECT pg_catalog.pg_advisory_unlock(<lock key>),
           pg_catalog.set_config('standard_conforming_strings', 'on', false),
           pg_catalog.set_config('client_encoding', 'UTF8', false);

Each migration commits on its own, with its history row, under the tenant's session-level
advisory lock, taken once; with ``--atomic-tenant`` the same batch has one ``COMMIT``,
after the last migration. The server stops at the first error and rolls back the
migration it was in; the executor then re-reads the history under the lock it still
holds to learn what committed, and lets the tenant go.

Text values never enter the batch: the run id, the descriptions, checksums and non-default
lock timeouts are session settings of the connection (``tenantmig.*``), set once per run
with query parameters (:data:`PRIME_SQL`). The batch holds quoted identifiers, integers
and the migrations' own SQL.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from . import history
from ._sql import text_array
from .control import claim_function, expect_function

_RESTORE = ("pg_catalog.set_config('standard_conforming_strings', 'on', false), "
            "pg_catalog.set_config('client_encoding', 'UTF8', false)")
"""What the end of every batch puts back, whatever its migrations did out of the loader's
sight: see :func:`build`."""

PRIME_SQL = """
SELECT pg_catalog.set_config('search_path', '', false),
       pg_catalog.set_config('standard_conforming_strings', 'on', false),
       pg_catalog.set_config('lock_timeout', $1, false),
       pg_catalog.set_config('tenantmig.lock_timeout', $1, false),
       pg_catalog.set_config('tenantmig.run_id', $2, false),
       (SELECT count(pg_catalog.set_config('tenantmig.d' || v, d, false))
             + count(pg_catalog.set_config('tenantmig.c' || v, c, false))
        FROM unnest($3::text[]::bigint[], $4::text[], $5::text[]) AS u(v, d, c)),
       (SELECT count(pg_catalog.set_config('tenantmig.lt' || v, t, false))
        FROM unnest($6::text[]::bigint[], $7::text[]) AS u(v, t))
"""
"""Parameters: session lock timeout, run id, versions, descriptions, checksums, versions
with their own lock timeout, those timeouts."""


@dataclass(frozen=True)
class Item:
    """One migration of a batch."""

    version: int
    sql: str
    """Rendered for the tenant."""
    own_lock_timeout: bool = False
    """Its lock timeout differs from the session's (``tenantmig.lt<version>``)."""


@dataclass(frozen=True)
class Batch:
    sql: str
    starts: tuple[int, ...]
    """Where each part of :attr:`sql` starts (0-based character offsets)."""
    versions: tuple[int | None, ...]
    """The migration each part belongs to; None for the batch's own statements."""

    def version_at(self, position: str | int | None) -> int | None:
        """The migration an error position (1-based, in characters) falls in."""
        try:
            offset = int(position) - 1 if position is not None else -1
        except ValueError:
            return None
        if offset < 0:
            return None
        return self.versions[bisect.bisect_right(self.starts, offset) - 1]


def build(
    control_schema: str,
    tenant: str,
    lock_key: int,
    items: Sequence[Item],
    *,
    undo: bool,
    has_history: bool,
    atomic: bool = False,
    search_path: str | None = None,
) -> Batch:
    """The batch applying (or undoing) *items* in *tenant*, in order: each in its own
    transaction, or all of them in one when *atomic*. *search_path* (quoted identifiers,
    see :func:`tenantmig._sql.search_path`) is set for each transaction with ``SET LOCAL``,
    so unqualified names in the migrations resolve in the tenant; the session's own
    (empty) path is back after each ``COMMIT``."""
    table = history.table(tenant)
    todo = "ARRAY[" + ",".join(str(int(i.version)) for i in items) + "]::bigint[]"
    parts: list[tuple[str, int | None]] = [
        (f"BEGIN;\nSELECT {claim_function(control_schema)}({int(lock_key)});\n", None)
    ]
    if has_history:
        parts.append((
            f"SELECT {expect_function(control_schema)}({int(lock_key)}, "
            f"ARRAY(SELECT version FROM {table} WHERE version = ANY ({todo})), {todo}, "
            f"{'true' if undo else 'false'});\n",
            None,
        ))
    elif not undo:
        parts.append((f"CREATE TABLE {table} ({history.HISTORY_COLUMNS});\n", None))
    own_before = False
    for index, item in enumerate(items):
        v = int(item.version)
        head = "BEGIN;\n" if index > 0 and not atomic else ""
        if search_path is not None and (index == 0 or not atomic):
            head += f"SET LOCAL search_path TO {search_path};\n"
        if item.own_lock_timeout:
            head += (f"SELECT pg_catalog.set_config('lock_timeout', "
                     f"pg_catalog.current_setting('tenantmig.lt{v}'), true);\n")
        elif atomic and own_before:  # back to the run's, for the rest of the transaction
            head += ("SELECT pg_catalog.set_config('lock_timeout', "
                     "pg_catalog.current_setting('tenantmig.lock_timeout'), true);\n")
        own_before = item.own_lock_timeout
        # A migration's duration in seconds: since its transaction began, or, in one
        # transaction for all, since the mark set just before it (epoch seconds, as text).
        elapsed = ("pg_catalog.date_part('epoch', pg_catalog.clock_timestamp() - "
                   "pg_catalog.now())")
        if atomic and index > 0:
            head += ("SELECT pg_catalog.set_config('tenantmig.t', pg_catalog.date_part("
                     "'epoch', pg_catalog.clock_timestamp())::text, true);\n")
            elapsed = ("(pg_catalog.date_part('epoch', pg_catalog.clock_timestamp()) - "
                       "pg_catalog.current_setting('tenantmig.t')::float8)")
        if undo:
            record = f"DELETE FROM {table} WHERE version = {v};\n"
        else:
            # date_part is float arithmetic; extract() would be numeric, measurably slower
            # when this runs 5 times per tenant for 10,000 tenants.
            record = (
                f"INSERT INTO {table} (version, description, checksum, applied_at, "
                f"duration_ms, run_id) VALUES ({v}, "
                f"pg_catalog.current_setting('tenantmig.d{v}'), "
                f"pg_catalog.current_setting('tenantmig.c{v}'), pg_catalog.now(), "
                f"({elapsed} * 1000)::integer, "
                "pg_catalog.current_setting('tenantmig.run_id'));\n"
            )
        # The newline ends a trailing -- comment; the semicolon a last statement without one.
        parts.append((f"{head}{item.sql}\n;\n{record}{'' if atomic else 'COMMIT;'}\n", v))
    if atomic:
        parts.append(("COMMIT;\n", None))
    # The next tenant's batch on this connection is read with the session's settings of
    # that moment, before any of it runs: a migration that turned standard_conforming_strings
    # off where the loader cannot see it (a SET or set_config in a DO block or a function)
    # would let a backslash in a name end a '...' string there; one that changed
    # client_encoding would have the driver encode the next tenant's queries in it
    # (asyncpg follows the server), and fail them for a name it cannot spell. (A batch
    # that stops at an error: see UNLOCK_IF_HELD.)
    parts.append((f"SELECT pg_catalog.pg_advisory_unlock({int(lock_key)}), {_RESTORE};\n",
                  None))
    starts: list[int] = []
    offset = 0
    for text, _ in parts:
        starts.append(offset)
        offset += len(text)
    return Batch("".join(t for t, _ in parts), tuple(starts), tuple(v for _, v in parts))


def prime_args(
    run_id: str,
    lock_timeout: str,
    migrations: Iterable[tuple[int, str, str, str | None]],
) -> tuple[object, ...]:
    """Arguments of :data:`PRIME_SQL` for (version, description, checksum, own lock
    timeout or None) of every migration a run may batch."""
    rows = sorted(set(migrations))
    own = [(v, t) for v, _, _, t in rows if t is not None]
    return (
        lock_timeout,
        run_id,
        text_array(v for v, _, _, _ in rows),
        [d for _, d, _, _ in rows],
        [c for _, _, c, _ in rows],
        text_array(v for v, _ in own),
        [t for _, t in own],
    )


UNLOCK_IF_HELD = f"""
SELECT {_RESTORE},
       (SELECT count(pg_catalog.pg_advisory_unlock($1)) FROM pg_catalog.pg_locks
        WHERE locktype = 'advisory' AND pid = pg_catalog.pg_backend_pid() AND granted
          AND objsubid = 1 AND classid = (($1 >> 32) & 4294967295)::oid
          AND objid = ($1 & 4294967295)::oid)
"""
"""Let the tenant go if this session holds its lock (a batch that failed half-way), and
put back what the end of a batch does (a migration that committed before the error may
have turned standard_conforming_strings off or changed client_encoding). Sent before the
history is read back, so that read is encoded as UTF-8 again."""
