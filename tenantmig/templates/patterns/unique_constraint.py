"""Pattern unique-constraint: a unique index built CONCURRENTLY, then ``ADD CONSTRAINT ...
UNIQUE USING INDEX`` (catalog only).

Explained in ``docs/patterns/unique-constraint.md``.
"""

from __future__ import annotations

from .. import _checks
from .._pattern import LOCK, TABLE, Args, Param, Pattern, Step
from .._text import CONCURRENT_BUILD_NOTES, sql_file


def _build(a: Args) -> list[Step]:
    table = a.ident("table")
    columns = _checks.columns(a.values["columns"], directions=False)
    name = a.optional_ident("name", "constraint name") or _checks.derived(
        _checks.index_name(table, columns, "key"), "constraint"
    )
    cols = ", ".join(columns)
    lt, desc = a.lock_timeout, a.description
    create = (
        f"CREATE UNIQUE INDEX CONCURRENTLY IF NOT EXISTS {name}\n"
        f"    ON {{{{schema}}}}.{table} ({cols});"
    )
    step1 = sql_file(
        f"""
        {desc}: step 1 of 2 of UNIQUE ({cols}) on {table}: the unique index, built
        CONCURRENTLY ({a.origin}).

        Why: ADD CONSTRAINT ... UNIQUE on its own builds the index under ACCESS EXCLUSIVE,
        blocking reads and writes for the whole build. Here the build takes SHARE UPDATE
        EXCLUSIVE on {table}: reads and writes go on. A duplicate makes it fail with 23505:
        deduplicate first. From the end of the build on, the index already rejects
        duplicates.

        {CONCURRENT_BUILD_NOTES}
        """,
        create,
        directives=["no-transaction"],
    )
    undo1 = sql_file(
        f"""
        Undo of step 1 of {desc}: DROP INDEX CONCURRENTLY, alone in a no-transaction migration
        (no ACCESS EXCLUSIVE on {table}). IF EXISTS makes a retry harmless.
        """,
        f"DROP INDEX CONCURRENTLY IF EXISTS {{{{schema}}}}.{name};",
        directives=["no-transaction"],
    )
    step2 = sql_file(
        f"""
        {desc}: step 2 of 2 of UNIQUE ({cols}) on {table}: turns the index of step 1 into the
        constraint {name} ({a.origin}).

        USING INDEX reuses the index already built and valid: no scan, no build, catalog
        only. Lock: ACCESS EXCLUSIVE on {table} for milliseconds, waiting at most {lt} (then
        the engine retries).
        """,
        f"""
        ALTER TABLE {{{{schema}}}}.{table}
            ADD CONSTRAINT {name} UNIQUE USING INDEX {name};
        """,
        directives=[a.lock_directive],
    )
    undo2 = sql_file(
        f"""
        Undo of step 2 of {desc}: back to the state after step 1. Dropping the constraint
        also drops its index, so the index is built again CONCURRENTLY; until it is valid,
        duplicates are not rejected. Run statement by statement (no-transaction): the DROP is
        catalog-only with a brief ACCESS EXCLUSIVE on {table} (bounded by the lock timeout),
        the build takes SHARE UPDATE EXCLUSIVE (reads and writes go on). IF EXISTS and IF NOT
        EXISTS make a retry harmless; the engine drops an INVALID index left by a failed
        build.
        """,
        f"ALTER TABLE {{{{schema}}}}.{table} DROP CONSTRAINT IF EXISTS {name};\n{create}",
        directives=["no-transaction", a.lock_directive],
    )
    return [
        Step("unique_index", step1, undo=undo1),
        Step("add_constraint", step2, undo=undo2),
    ]


PATTERN = Pattern(
    "unique-constraint",
    "add a UNIQUE constraint: unique index built CONCURRENTLY, then ADD CONSTRAINT "
    "... USING INDEX",
    (
        TABLE,
        Param("columns", "comma separated columns", required=True),
        Param("name", "the index and constraint name (default TABLE_COLUMNS_key)"),
        LOCK,
    ),
    build=_build,
)
