"""What a Python migration's ``up(ctx)`` / ``down(ctx)`` receives."""

from __future__ import annotations

from typing import Any

import anyio
import structlog

from ._sql import quote_ident, render
from .durations import format_ms
from .history import HISTORY_TABLE
from .source import string_contexts


class MigrationContext:
    """One tenant, one migration: the schema, the connection and helpers.

    ``execute``, ``fetch``, ``fetchrow`` and ``fetchval`` replace ``{{schema}}`` with the
    quoted tenant schema; values go as ``$1, $2`` parameters, never into the text.
    """

    def __init__(
        self,
        *,
        conn: Any,
        schema: str,
        version: int,
        run_id: str,
        transactional: bool,
        lock_timeout_ms: int,
        log: Any,
        control_schema: str = "tenantmig",
    ) -> None:
        self.conn = conn
        self.schema = schema
        self.quoted = quote_ident(schema)
        self.version = version
        self.run_id = run_id
        self.transactional = transactional
        self.lock_timeout_ms = lock_timeout_ms
        self.log: structlog.stdlib.BoundLogger = log
        self._backfills = f"{quote_ident(control_schema)}.backfills"

    async def _fingerprint(self) -> str:
        """What a backfill's saved progress belongs to: this incarnation of the tenant
        schema (its OID) and its history as it stands (each version with when it was
        applied). A kill and a retry leave both alone; dropping and re-creating the tenant,
        or undoing and re-applying a migration before this one, changes them."""
        namespace = await self.conn.fetchval(
            "SELECT oid::text FROM pg_catalog.pg_namespace WHERE nspname = $1", self.schema)
        history = None
        if await self.conn.fetchval("SELECT pg_catalog.to_regclass($1) IS NOT NULL",
                                    f"{self.quoted}.{HISTORY_TABLE}"):
            history = await self.conn.fetchval(
                "SELECT pg_catalog.md5(pg_catalog.string_agg(version::text || '@' || "
                "pg_catalog.date_part('epoch', applied_at)::text, ',' ORDER BY version)) "
                f"FROM {self.quoted}.{HISTORY_TABLE}")
        return f"{namespace}:{history or ''}"

    def sql(self, text: str) -> str:
        """*text* with ``{{schema}}`` replaced (inside string constants too, safely)."""
        return render(text, self.schema, string_contexts(text))

    async def execute(self, sql: str, *args: Any) -> str:
        result: str = await self.conn.execute(self.sql(sql), *args)
        return result

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        return list(await self.conn.fetch(self.sql(sql), *args))

    async def fetchrow(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchrow(self.sql(sql), *args)

    async def fetchval(self, sql: str, *args: Any) -> Any:
        return await self.conn.fetchval(self.sql(sql), *args)

    async def backfill(
        self,
        table: str,
        set_sql: str,
        *,
        where: str | None = None,
        key: str = "id",
        batch_size: int = 1000,
        pause: float = 0.0,
        name: str | None = None,
    ) -> int:
        """Update *table* in keyset batches over its integer *key*, each batch committed
        on its own, pausing *pause* seconds between batches; returns the rows updated.

        Only in a non-transactional migration (``transactional = False``): in one
        transaction, batches would hold every row lock to the end.

        Resumable: each batch records the last key it covered in the control schema's
        ``backfills`` table, in the batch's own transaction, so after a crash the next
        attempt goes on from there without redoing finished batches. The record is
        removed when the backfill completes. Give *name* to run two backfills of the
        same table in one migration.
        """
        if self.transactional:
            raise RuntimeError(
                "ctx.backfill commits each batch: set transactional = False in this migration"
            )
        relation = f"{self.quoted}.{quote_ident(table)}"
        column = quote_ident(key)
        condition = f" AND ({self.sql(where)})" if where else ""
        next_upper = (
            f"SELECT max({column}) FROM (SELECT {column} FROM {relation} "
            f"WHERE {column} > $1 ORDER BY {column} LIMIT $2) AS batch"
        )
        update = (
            f"UPDATE {relation} SET {self.sql(set_sql)} "
            f"WHERE {column} > $1 AND {column} <= $2{condition}"
        )
        label = name or table
        fingerprint = await self._fingerprint()
        saved = await self.conn.fetchrow(
            f"SELECT last_key, rows, batches, fingerprint FROM {self._backfills} "
            "WHERE tenant = $1 AND version = $2 AND name = $3",
            self.schema, self.version, label,
        )
        # No fingerprint: saved by an older release, which recorded none; trusted as before.
        if saved is not None and saved["fingerprint"] not in (None, fingerprint):
            # Recorded for another incarnation of the tenant (dropped and created again) or
            # before some of its migrations were undone and applied again: the rows below
            # that key may not be done at all.
            self.log.warning("backfill progress of an earlier state of the tenant discarded",
                             table=table, after=saved["last_key"])
            await self.conn.execute(
                f"DELETE FROM {self._backfills} WHERE tenant = $1 AND version = $2 "
                "AND name = $3", self.schema, self.version, label)
            saved = None
        if saved is not None:
            lower = saved["last_key"]
            total: int = int(saved["rows"])
            batches: int = int(saved["batches"])
            self.log.info("backfill resumed", table=table, after=lower, rows=total)
        else:
            lower = await self.conn.fetchval(f"SELECT min({column}) - 1 FROM {relation}")
            total, batches = 0, 0
        record = (
            f"INSERT INTO {self._backfills} AS b (tenant, version, name, last_key, rows, "
            "batches, fingerprint) VALUES ($1, $2, $3, $4, $5, 1, $6) "
            "ON CONFLICT (tenant, version, name) "
            "DO UPDATE SET last_key = EXCLUDED.last_key, rows = b.rows + EXCLUDED.rows, "
            "batches = b.batches + 1, updated_at = now(), fingerprint = EXCLUDED.fingerprint"
        )
        while lower is not None:
            async with self.conn.transaction():
                await self.conn.execute(
                    "SELECT pg_catalog.set_config('lock_timeout', $1, true)",
                    format_ms(self.lock_timeout_ms),
                )
                upper = await self.conn.fetchval(next_upper, lower, batch_size)
                if upper is None:
                    break
                status = await self.conn.execute(update, lower, upper)
                updated = int(status.rsplit(" ", 1)[-1])
                await self.conn.execute(record, self.schema, self.version, label, upper,
                                        updated, fingerprint)
            total += updated
            batches += 1
            self.log.debug("backfill batch", table=table, upto=upper, rows=updated)
            lower = upper
            if pause:
                await anyio.sleep(pause)
        await self.conn.execute(
            f"DELETE FROM {self._backfills} WHERE tenant = $1 AND version = $2 AND name = $3",
            self.schema, self.version, label,
        )
        self.log.debug("backfill done", table=table, rows=total, batches=batches)
        return total
