"""Pattern enum-value: ``ALTER TYPE ... ADD VALUE IF NOT EXISTS`` alone in its migration.

Explained in ``docs/patterns/enum-value.md``.
"""

from __future__ import annotations

from .. import _checks
from .._pattern import LOCK, Args, Param, Pattern, Step
from .._text import sql_file


def _build(a: Args) -> list[Step]:
    type_name = a.ident("type_name", "type name")
    value = _checks.enum_value(a.values["value"])
    literal = "'" + value.replace("'", "''") + "'"
    desc = a.description
    up = sql_file(
        f"""
        {desc}: adds {literal} to the enum type {type_name}, alone in its migration
        ({a.origin}).

        No table lock, but the type stays locked until commit, so nothing else runs in this
        transaction; the lock timeout ({a.lock_timeout}) bounds the wait. The new value cannot
        be used in the transaction that adds it (55P04 on PostgreSQL 12+; before 12 ADD VALUE
        cannot run in a transaction at all): code or migrations that write {literal} must
        come in a later version.

        IF NOT EXISTS makes a retry harmless. Enum values cannot be removed, so there is
        deliberately no undo: removing one means a new type and rewriting every table that
        uses it under ACCESS EXCLUSIVE.
        """,
        f"ALTER TYPE {{{{schema}}}}.{type_name} ADD VALUE IF NOT EXISTS {literal};",
        directives=[a.lock_directive],
    )
    return [Step("add_value", up)]


PATTERN = Pattern(
    "enum-value",
    "add a value to an enum type (ALTER TYPE ... ADD VALUE IF NOT EXISTS), alone in "
    "its migration",
    (
        Param("type_name", "the enum type", required=True),
        Param("value", "the new value", required=True),
        LOCK,
    ),
    build=_build,
)
