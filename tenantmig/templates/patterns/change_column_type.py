"""Pattern change-column-type: a new column kept in sync by a trigger, a batched backfill,
then a switch by renaming, so no rewrite runs under ACCESS EXCLUSIVE.

Explained in ``docs/patterns/change-column-type.md``.
"""

from __future__ import annotations

from .. import _checks
from .._pattern import BATCH, COLUMN, KEY, LOCK, TABLE, Args, Param, Pattern, Step
from .._text import allow, py_file, sql_file


def _build(a: Args) -> list[Step]:
    table, column = a.ident("table"), a.ident("column")
    to_type = _checks.sql_type(a.values["to_type"], "to_type")
    key = a.ident("key")
    batch = _checks.positive(a.values["batch_size"], "batch_size", 100_000)
    using = _checks.expression(a.values["using"], "using") if a.raw("using") else None
    new = _checks.derived(f"{column}_new", "column")
    old = _checks.derived(f"{column}_old", "column")
    sync = _checks.derived(f"{table}_{column}_sync", "function")
    value = f"({using})::{to_type}" if using else f"{column}::{to_type}"
    lt = a.lock_timeout
    desc = a.description

    if using:
        assign = f"SELECT {value} INTO NEW.{new} FROM (SELECT NEW.*) AS r;"
        events = "INSERT OR UPDATE"
        how = (
            f"computes {new} = {value} from the whole new row (the expression may read any "
            "column), so it fires on every INSERT and UPDATE"
        )
    else:
        assign = f"NEW.{new} := NEW.{column}::{to_type};"
        events = f"INSERT OR UPDATE OF {column}"
        how = f"sets {new} = {column}::{to_type} on every INSERT and every UPDATE of {column}"

    step1 = sql_file(
        f"""
        {desc}: step 1 of 3 of changing {table}.{column} to {to_type} without rewriting the
        table under lock ({a.origin}).

        Adds the nullable column {new} {to_type} (no default: catalog-only, no rewrite) and
        a BEFORE trigger that {how}. The trigger replaces a dual write by the application:
        from this commit on, every write keeps {new} in sync, so no release of the app is
        needed. Both statements commit together, so no write escapes both the trigger and the
        backfill of the next migration.

        Careful: a value the conversion cannot handle now makes that write fail. Check the
        data first, or give a conversion that cannot fail (NULLIF, CASE) as using=...

        Locks: ACCESS EXCLUSIVE on {table} for the catalog change only (milliseconds), then
        SHARE ROW EXCLUSIVE for CREATE TRIGGER until commit, right after; each wait is bounded
        by the lock timeout ({lt}) and retried by the engine.
        """,
        f"""
        ALTER TABLE {{{{schema}}}}.{table} ADD COLUMN {new} {to_type};

        CREATE FUNCTION {{{{schema}}}}.{sync}() RETURNS trigger
        LANGUAGE plpgsql AS $sync$
        #variable_conflict use_column
        BEGIN
            {assign}
            RETURN NEW;
        END
        $sync$;

        CREATE TRIGGER {sync}
            BEFORE {events} ON {{{{schema}}}}.{table}
            FOR EACH ROW EXECUTE FUNCTION {{{{schema}}}}.{sync}();
        """,
        directives=[a.lock_directive],
    )
    undo1 = sql_file(
        f"""
        Undo of step 1 of {desc}: drops the sync trigger, its function and {table}.{new}.
        Catalog-only (DROP COLUMN does not rewrite); brief ACCESS EXCLUSIVE on {table},
        waiting at most {lt}. The original column {column} is untouched.
        """,
        f"""
        DROP TRIGGER IF EXISTS {sync} ON {{{{schema}}}}.{table};
        DROP FUNCTION IF EXISTS {{{{schema}}}}.{sync}();
        {allow("drop-column", f"undo of step 1: {new} only holds the trigger's copy of "
                f"{column}, which no release of the app reads yet")}
        ALTER TABLE {{{{schema}}}}.{table} DROP COLUMN IF EXISTS {new};
        """,
        directives=[a.lock_directive],
    )
    pending = f"{new} IS DISTINCT FROM {value}"
    step2 = py_file(
        f"""
        {desc}: step 2 of 3 of changing {table}.{column} to {to_type}: backfill {new} for the
        rows written before step 1 ({a.origin}).

        Rows written since step 1 are kept in sync by the trigger; this fills the older ones
        with the same conversion. transactional = False and ctx.backfill walk {table}.{key} in
        keyset batches of {batch}, each committed on its own: row locks on at most {batch} rows
        for milliseconds, ROW EXCLUSIVE on the table, so reads and writes go on (a loop inside
        one transaction would hold every row lock to the end). Idempotent: only
        rows whose {new} differs from the conversion are touched, so a retry or a resume just
        continues. The final check (a plain read, ACCESS SHARE) makes sure nothing was missed
        before the switch can run.
        """,
        f"""
        from __future__ import annotations

        from typing import Any

        transactional = False
        lock_timeout = {lt!r}

        TABLE = {table!r}
        SET = {f"{new} = {value}"!r}
        PENDING = {pending!r}


        async def up(ctx: Any) -> None:
            rows = await ctx.backfill(
                TABLE, SET, where=PENDING, key={key!r}, batch_size={batch}, pause=0.01
            )
            left = await ctx.fetchval(
                "SELECT count(*) FROM {{{{schema}}}}." + TABLE + " WHERE " + PENDING
            )
            if left:
                raise RuntimeError(f"{{left}} rows of {table} still differ in {new}")
            ctx.log.info("backfilled", table=TABLE, rows=rows)


        async def down(ctx: Any) -> None:
            # Nothing to undo: the values live in {new}, which the undo of step 1 drops.
            ctx.log.info("nothing to undo for the backfill", table=TABLE)
        """,
    )
    step3 = sql_file(
        f"""
        {desc}: step 3 of 3 of changing {table}.{column} to {to_type}: the switch, in one
        short transaction ({a.origin}).

        Drops the sync trigger and its function, renames {column} -> {old} and {new} ->
        {column}: from this commit on the application reads and writes the {to_type} column
        under the old name. {old} loses NOT NULL (it is no longer written, and inserts must not
        fail on it) and is kept for a rollback; dropping it belongs to a later release. Step 2
        checked that every row was backfilled.

        Before applying, carry over what the old column had. A DEFAULT: SET DEFAULT on {new}
        here, before the renames (catalog-only). NOT NULL, indexes, unique and foreign keys:
        on {new}, in migrations that run before this one (patterns add-not-null,
        concurrent-index, unique-constraint, foreign-key; renumber this file after them, it is
        not applied anywhere yet). Views and functions that use {column} keep pointing at
        {old}: recreate them here.

        Locks: all catalog-only; ACCESS EXCLUSIVE on {table} for milliseconds, waiting at most
        {lt} (then the engine retries). No undo: writes after the switch go to the new column
        only, so going back would lose them.
        """,
        f"""
        DROP TRIGGER {sync} ON {{{{schema}}}}.{table};
        DROP FUNCTION {{{{schema}}}}.{sync}();
        {allow("rename-column", f"the application reads and writes {column} as {to_type} "
                f"from this release on; {old} is kept for rollback")}
        ALTER TABLE {{{{schema}}}}.{table} RENAME COLUMN {column} TO {old};
        {allow("rename-column", f"{new} takes the old name in the same transaction, so "
                f"{column} never disappears")}
        ALTER TABLE {{{{schema}}}}.{table} RENAME COLUMN {new} TO {column};
        ALTER TABLE {{{{schema}}}}.{table} ALTER COLUMN {old} DROP NOT NULL;
        """,
        directives=[a.lock_directive],
    )
    return [
        Step("add_column_and_sync_trigger", step1, undo=undo1),
        Step("backfill", step2, ext="py"),
        Step("switch", step3),
    ]


PATTERN = Pattern(
    "change-column-type",
    "change a column's type without a rewrite under lock: new column + sync trigger, "
    "batched backfill, switch",
    (
        TABLE,
        COLUMN,
        Param("to_type", "the new type", required=True),
        Param("using", "expression computing the new value from the row (default: "
              "column::to_type)"),
        KEY,
        BATCH,
        LOCK,
    ),
    build=_build,
)
