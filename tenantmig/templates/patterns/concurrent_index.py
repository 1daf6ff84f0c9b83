"""Pattern concurrent-index: ``CREATE INDEX CONCURRENTLY`` alone in a no-transaction migration.

Explained in ``docs/patterns/concurrent-index.md``.
"""

from __future__ import annotations

from .. import _checks
from .._pattern import TABLE, Args, Param, Pattern, Step
from .._text import CONCURRENT_BUILD_NOTES, sql_file


def _build(a: Args) -> list[Step]:
    table = a.ident("table")
    columns = _checks.columns(a.values["columns"], directions=True)
    unique = _checks.flag(a.values["unique"], "unique")
    name = a.optional_ident("name", "index name") or _checks.derived(
        _checks.index_name(table, columns, "key" if unique else "idx"), "index"
    )
    desc = a.description
    kind = "UNIQUE INDEX" if unique else "INDEX"
    up = sql_file(
        f"""
        {desc}: {kind.lower()} {name} on {table} ({", ".join(columns)}), built CONCURRENTLY
        ({a.origin}).

        Lock: SHARE UPDATE EXCLUSIVE on {table}, so reads and writes go on during the whole
        build (a plain CREATE INDEX would block every write with a SHARE lock).{
            " A duplicate makes the build fail with 23505: deduplicate first." if unique else ""}

        {CONCURRENT_BUILD_NOTES}

        The index name cannot be schema-qualified here: it always goes in the table's schema.
        """,
        f"""
        CREATE {kind} CONCURRENTLY IF NOT EXISTS {name}
            ON {{{{schema}}}}.{table} ({", ".join(columns)});
        """,
        directives=["no-transaction"],
    )
    undo = sql_file(
        f"""
        Undo of {desc}: DROP INDEX CONCURRENTLY waits out the queries using the index instead
        of taking ACCESS EXCLUSIVE on {table}; like the build it cannot run in a transaction
        and stays the only statement. IF EXISTS makes a retry harmless.
        """,
        f"DROP INDEX CONCURRENTLY IF EXISTS {{{{schema}}}}.{name};",
        directives=["no-transaction"],
    )
    return [Step("create_index", up, undo=undo)]


PATTERN = Pattern(
    "concurrent-index",
    "build an index with CREATE INDEX CONCURRENTLY, alone in a no-transaction "
    "migration",
    (
        TABLE,
        Param("columns", "comma separated columns, each optionally followed by "
              "asc or desc", required=True),
        Param("name", "the index name (default TABLE_COLUMNS_idx)"),
        Param("unique", "true for a unique index", default="false"),
    ),
    build=_build,
)
