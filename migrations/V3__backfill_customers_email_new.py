"""Step 2 of 3 of the customers.email swap: backfill email_new for existing rows.

Rows written since V2 are already filled by the trigger; this fills the older
ones with the same normalisation. Not the commonly copied loop inside the
migration's single transaction, which holds every row lock to the end (see
docs/patterns/index.md, section "Corrections to commonly copied zero-downtime
advice"). Here ``transactional = False`` and ``ctx.backfill`` walks the primary
key in keyset batches of 500, committing each batch on its own, so each batch
holds row locks on at most 500 customers for milliseconds and no table lock
beyond ROW EXCLUSIVE (reads and writes go on). Idempotent: the WHERE clause
skips rows already done, so a retry or resume just continues.
"""

from __future__ import annotations

from typing import Any

transactional = False


async def up(ctx: Any) -> None:
    updated = await ctx.backfill(
        "customers",
        "email_new = lower(btrim(email))",
        where="email_new IS NULL AND email IS NOT NULL",
        batch_size=500,
        pause=0.01,
    )
    # V4 stops maintaining the old column; make sure nothing was missed before
    # anyone can run it. A plain read: ACCESS SHARE only, blocks no one.
    missing = await ctx.fetchval(
        "SELECT count(*) FROM {{schema}}.customers WHERE email_new IS NULL AND email IS NOT NULL"
    )
    if missing:
        raise RuntimeError(f"{missing} customers still have no email_new after the backfill")
    ctx.log.info("customers email_new backfilled", rows=updated)


async def down(ctx: Any) -> None:
    # Nothing to undo: the values live in email_new, which U2 drops.
    ctx.log.info("nothing to undo for the email_new backfill")
