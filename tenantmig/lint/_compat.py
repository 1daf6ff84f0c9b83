"""Compatibility with running code: renames and drops of what already exists break the
application version still deployed while the migration runs (expand/contract instead)."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ObjectType

from ._common import ident, name_key, shown, strings, table_key
from ._facts import RENAMED_RELATIONS, Command
from ._walker import Family, Walk

family = Family("compatibility")

RENAME_COLUMN = family.rule(
    "rename-column", "RENAME COLUMN of an existing table (breaks running code)"
)
RENAME_TABLE = family.rule(
    "rename-table", "RENAME of an existing table or view (breaks running code)"
)
DROP_COLUMN = family.rule(
    "drop-column", "DROP COLUMN of an existing table (breaks running code, loses data)"
)
DROP_TABLE = family.rule(
    "drop-table", "DROP TABLE of an existing table (breaks running code, loses data)"
)

_EXPAND_CONTRACT = (
    "expand/contract across releases; allow it with a reason once no deployed code uses it"
)


@family.on(ast.RenameStmt)
def _rename(w: Walk, node: ast.RenameStmt) -> None:
    table = table_key(node.relation)
    if table in w.facts.created:
        return
    if node.renameType is ObjectType.OBJECT_COLUMN and node.subname and node.newname:
        old, new = ident(node.subname), ident(node.newname)
        w.report(
            RENAME_COLUMN,
            f"RENAME COLUMN {old} TO {new} on {shown(table)} breaks running code that still "
            f"uses {old} — add {new}, keep both in sync, switch readers, drop {old} later; "
            f"{_EXPAND_CONTRACT}",
        )
    elif node.renameType in RENAMED_RELATIONS and node.newname and node.relation:
        kind = RENAMED_RELATIONS[node.renameType]
        w.report(
            RENAME_TABLE,
            f"renaming {kind} {shown(table)} to {ident(node.newname)} breaks running code "
            "that still uses the old name — create the new one (or a view under the old name) "
            f"and move readers and writers over; {_EXPAND_CONTRACT}",
        )


@family.on(ast.DropStmt)
def _drop_table(w: Walk, node: ast.DropStmt) -> None:
    if node.removeType is not ObjectType.OBJECT_TABLE:
        return
    created = set(w.facts.created)
    for obj in node.objects or ():
        table = name_key(strings(obj))
        if table not in created:
            w.report(
                DROP_TABLE,
                f"DROP TABLE {shown(table)} breaks running code that still uses it and deletes "
                "its data — stop using it in an earlier release first; "
                f"{_EXPAND_CONTRACT}",
            )
        created.discard(table)  # named twice: the second drop finds no table of ours


@family.on_command(AlterTableType.AT_DropColumn)
def _drop_column(w: Walk, command: Command) -> None:
    name = command.node.name
    if name and not command.new:
        w.report(
            DROP_COLUMN,
            f"DROP COLUMN {ident(name)} of {shown(command.table)} breaks running code that "
            f"still reads or writes it, and its data is gone — stop using it in an earlier "
            f"release first; {_EXPAND_CONTRACT}",
        )
