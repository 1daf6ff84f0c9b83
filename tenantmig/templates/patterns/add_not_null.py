"""Pattern add-not-null: ``CHECK ... NOT VALID``, then in the next migration VALIDATE,
``SET NOT NULL`` (which the valid CHECK spares its scan) and drop the CHECK.

Explained in ``docs/patterns/add-not-null.md``.
"""

from __future__ import annotations

from .. import _checks
from .._pattern import COLUMN, LOCK, TABLE, Args, Param, Pattern, Step
from .._text import sql_file


def _build(a: Args) -> list[Step]:
    table, column = a.ident("table"), a.ident("column")
    name = a.optional_ident("name", "constraint name") or _checks.derived(
        f"{table}_{column}_not_null", "constraint"
    )
    lt, desc = a.lock_timeout, a.description
    check = f"CHECK ({column} IS NOT NULL)"
    step1 = sql_file(
        f"""
        {desc}: step 1 of 2 of making {table}.{column} NOT NULL ({a.origin}).

        Adds {check} NOT VALID: enforced for every write from this commit on, existing rows
        not scanned. NOT VALID still takes ACCESS EXCLUSIVE on {table}, for milliseconds
        (catalog only), waiting at most {lt}. The validation scan is the next migration, so it
        never runs under this lock.

        Before applying: the application must no longer write NULL into {column} (such writes
        now fail with 23514), and existing NULLs must be filled (pattern backfill) before the
        next migration, which fails otherwise.
        """,
        f"""
        ALTER TABLE {{{{schema}}}}.{table}
            ADD CONSTRAINT {name} {check} NOT VALID;
        """,
        directives=[a.lock_directive],
    )
    undo1 = sql_file(
        f"""
        Undo of step 1 of {desc}: drops the CHECK. Catalog-only; brief ACCESS EXCLUSIVE on
        {table}, waiting at most {lt}.
        """,
        f"ALTER TABLE {{{{schema}}}}.{table} DROP CONSTRAINT IF EXISTS {name};",
        directives=[a.lock_directive],
    )
    step2 = sql_file(
        f"""
        {desc}: step 2 of 2 of making {table}.{column} NOT NULL ({a.origin}), a separate
        migration from the NOT VALID CHECK: adding, validating and setting NOT NULL in one
        transaction would hold ACCESS EXCLUSIVE through the whole scan.

        * VALIDATE scans {table} under SHARE UPDATE EXCLUSIVE: reads and writes go on during
          the scan. It fails with 23514 if a NULL is left (backfill first).
        * SET NOT NULL needs ACCESS EXCLUSIVE but, on PostgreSQL 12+, skips its own scan because
          the now valid CHECK proves there is no NULL: milliseconds.
        * The CHECK is then redundant and dropped (catalog-only).

        Each lock waits at most {lt}; on a timeout the engine retries the whole migration.
        """,
        f"""
        ALTER TABLE {{{{schema}}}}.{table} VALIDATE CONSTRAINT {name};
        ALTER TABLE {{{{schema}}}}.{table} ALTER COLUMN {column} SET NOT NULL;
        ALTER TABLE {{{{schema}}}}.{table} DROP CONSTRAINT {name};
        """,
        directives=[a.lock_directive],
    )
    undo2 = sql_file(
        f"""
        Undo of step 2 of {desc}: back to the state after step 1, {column} nullable and
        guarded by the unvalidated CHECK. Catalog-only (NOT VALID skips the scan): brief ACCESS
        EXCLUSIVE on {table}, waiting at most {lt}.
        """,
        f"""
        ALTER TABLE {{{{schema}}}}.{table} ALTER COLUMN {column} DROP NOT NULL;
        ALTER TABLE {{{{schema}}}}.{table}
            ADD CONSTRAINT {name} {check} NOT VALID;
        """,
        directives=[a.lock_directive],
    )
    return [
        Step("check_not_valid", step1, undo=undo1),
        Step("validate_set_not_null", step2, undo=undo2),
    ]


PATTERN = Pattern(
    "add-not-null",
    "make a column NOT NULL: CHECK ... NOT VALID, then VALIDATE + SET NOT NULL + drop "
    "the CHECK in the next migration",
    (
        TABLE,
        COLUMN,
        Param("name", "the temporary CHECK's name (default TABLE_COLUMN_not_null)"),
        LOCK,
    ),
    build=_build,
)
