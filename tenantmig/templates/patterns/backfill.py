"""Pattern backfill: a Python migration that sets a column in keyset batches committed one
by one (``ctx.backfill``).

Explained in ``docs/patterns/backfill.md``.
"""

from __future__ import annotations

from .. import _checks
from .._pattern import BATCH, KEY, LOCK, TABLE, Args, Param, Pattern, Step
from .._text import py_file


def _build(a: Args) -> list[Step]:
    table, column = a.ident("table"), a.ident("column")
    expression = _checks.expression(a.values["expression"], "expression")
    where = _checks.expression(a.values["where"], "where") if a.raw("where") else None
    key = a.ident("key")
    batch = _checks.positive(a.values["batch_size"], "batch_size", 100_000)
    lt, desc = a.lock_timeout, a.description
    pending = f"{column} IS DISTINCT FROM ({expression})"
    condition = f"({where}) AND {pending}" if where else pending
    doc = f"""
        {desc}: sets {table}.{column} = {expression} on existing rows{
            f" where {where}" if where else ""} ({a.origin}).

        transactional = False and ctx.backfill walk {table}.{key} in keyset batches of {batch},
        each committed on its own, pausing between batches: each batch holds row locks on at
        most {batch} rows for milliseconds and ROW EXCLUSIVE on the table, so reads and writes
        go on (a loop or a single UPDATE inside one transaction holds
        every row lock and earlier DDL lock to the end and holds back vacuum).

        Idempotent: only rows where {column} IS DISTINCT FROM the expression are touched, so a
        retry or a resume continues where it stopped, and rows already right are not
        rewritten. Rows the application writes meanwhile are its own business: if it must
        write the same value, deploy that first.

        No down(): the overwritten values are gone, so this cannot be undone.
    """
    code = f"""
        from __future__ import annotations

        from typing import Any

        transactional = False
        lock_timeout = {lt!r}

        TABLE = {table!r}
        SET = {f"{column} = {expression}"!r}
        WHERE = {condition!r}


        async def up(ctx: Any) -> None:
            rows = await ctx.backfill(
                TABLE, SET, where=WHERE, key={key!r}, batch_size={batch}, pause=0.01
            )
            ctx.log.info("backfilled", table=TABLE, rows=rows)
    """
    return [Step("backfill", py_file(doc, code), ext="py")]


PATTERN = Pattern(
    "backfill",
    "set a column on existing rows in keyset batches, each committed on its own "
    "(Python migration, ctx.backfill)",
    (
        TABLE,
        Param("column", "the column to set", required=True),
        Param("expression", "the value, an SQL expression over the row", required=True),
        Param("where", "only rows matching this SQL condition"),
        KEY,
        BATCH,
        LOCK,
    ),
    build=_build,
)
