"""Step 2 of 3 of a NOT NULL invoices.status: set status on existing invoices.

Business logic: paid_at set -> 'paid', else sent_at set -> 'sent', else
'draft'. Not the commonly copied single UPDATE of the whole table inside the
migration's transaction (see docs/patterns/index.md, section
"Corrections to commonly copied zero-downtime advice"). Here
``transactional = False`` and ``ctx.backfill`` walks the primary key in keyset
batches of 1000, each committed on its own: row locks on at most 1000 invoices
for milliseconds, ROW EXCLUSIVE on the table (reads and writes go on).
Idempotent: only rows still NULL are touched, so a retry or resume continues
where it stopped. V7 validates the CHECK, which fails loudly if a NULL is left.
"""

from __future__ import annotations

from typing import Any

transactional = False


async def up(ctx: Any) -> None:
    updated = await ctx.backfill(
        "invoices",
        "status = CASE"
        " WHEN paid_at IS NOT NULL THEN 'paid'"
        " WHEN sent_at IS NOT NULL THEN 'sent'"
        " ELSE 'draft' END",
        where="status IS NULL",
        batch_size=1000,
        pause=0.01,
    )
    ctx.log.info("invoices status backfilled", rows=updated)


async def down(ctx: Any) -> None:
    # Nothing to undo: the values live in the status column, which U5 drops.
    ctx.log.info("nothing to undo for the status backfill")
