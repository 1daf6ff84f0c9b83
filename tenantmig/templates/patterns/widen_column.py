"""Pattern widen-column: one ``ALTER COLUMN ... TYPE`` where the change is binary-coercible.

The builder asks the linter's :func:`~tenantmig.lint.coercion` whether the change rewrites
the table, and refuses (pointing at change-column-type) when it does. Explained in
``docs/patterns/widen-column.md``.
"""

from __future__ import annotations

from ..._exceptions import TemplateError
from ...lint import coercion
from .. import _checks
from .._pattern import COLUMN, LOCK, TABLE, Args, Param, Pattern, Step
from .._text import sql_file


def _build(a: Args) -> list[Step]:
    table, column = a.ident("table"), a.ident("column")
    to_type = _checks.sql_type(a.values["to_type"], "to_type")
    given = _checks.sql_type(a.values["from_type"], "from_type") if a.raw("from_type") else None
    known = a.earlier.columns.get((table, column)) if a.earlier is not None else None
    target = _checks.column_type(to_type)
    if known is not None and given is not None and _checks.column_type(given) != known:
        raise TemplateError(
            f"from_type {given} does not match {table}.{column} as the migrations in the "
            f"folder leave it: {known}"
        )
    if known is None and given is None:
        raise TemplateError(
            f"the current type of {table}.{column} is not declared by any migration in the "
            "folder (or the folder does not load): give it with --param from_type=TYPE "
            "(e.g. varchar(50)) so the widening can be checked"
        )
    old = known if known is not None else _checks.column_type(given or "")
    verdict = coercion(old, target)
    if verdict == "same":
        raise TemplateError(f"{table}.{column} is already {old}")
    if verdict != "binary":
        raise TemplateError(
            f"{old} -> {to_type} is not binary-coercible: ALTER COLUMN TYPE would rewrite "
            f"{table} and rebuild its indexes under ACCESS EXCLUSIVE. Use --pattern "
            "change-column-type (new column, sync trigger, batched backfill, switch) instead"
        )
    directives = [a.lock_directive]
    if known is None:
        directives.append(
            f"allow alter-column-type {old} -> {to_type} is binary-coercible (no rewrite, no "
            f"index rebuild); the current type {old} was given to tenantmig new because no "
            "migration in this folder declares it"
        )
    header = f"""
        {a.description}: widens {table}.{column} from {old} to {to_type} in place
        ({a.origin}).

        Why this is safe: {old} -> {to_type} is binary-coercible, so PostgreSQL only changes
        the catalog: no table rewrite, no index rebuild. The column swap in five steps that is often
        advised for this is only needed for changes that do rewrite (pattern
        change-column-type).

        Lock: ACCESS EXCLUSIVE on {table} for milliseconds. The lock timeout
        ({a.lock_timeout}) bounds how long this waits for running transactions, and so how long
        reads and writes can queue behind it; on a timeout the engine retries.

        No undo: narrowing the column back would scan {table} under ACCESS EXCLUSIVE and fail
        on longer values.
    """
    body = f"ALTER TABLE {{{{schema}}}}.{table} ALTER COLUMN {column} TYPE {to_type};"
    return [Step("alter_type", sql_file(header, body, directives=directives))]


PATTERN = Pattern(
    "widen-column",
    "widen a column in place (varchar(n) -> varchar(m >= n) or text, more numeric "
    "precision): one ALTER COLUMN TYPE, no rewrite",
    (
        TABLE,
        COLUMN,
        Param("to_type", "the wider type", required=True),
        Param("from_type", "its current type, when no migration in the folder "
              "declares it"),
        LOCK,
    ),
    build=_build,
    reads_folder=True,
)
