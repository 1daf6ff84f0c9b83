"""Compatibility with running code: renames and drops of what already exists break the
application version still deployed while the migration runs (expand/contract instead); and
drops of a whole schema or database, which no tenant migration may make."""

from __future__ import annotations

from typing import Any

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, NullTestType, ObjectType

from ._common import SENTINEL_NAME, WARNING, S, ident, name_key, shown, strings, table_key
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
DROP_NOT_NULL = family.rule(
    "drop-not-null",
    "ALTER COLUMN ... DROP NOT NULL on an existing table (running code may rely on it)",
    WARNING,
)
DROP_DEFAULT = family.rule(
    "drop-default",
    "ALTER COLUMN ... DROP DEFAULT on an existing table (running code may rely on it)",
    WARNING,
)
DROP_DATABASE = family.rule("drop-database", "DROP DATABASE in a migration")
DROP_SCHEMA = family.rule(
    "drop-schema", "DROP SCHEMA of a schema that this same migration did not create"
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


@family.on_command(AlterTableType.AT_DropNotNull)
def _drop_not_null(w: Walk, command: Command) -> None:
    column = command.node.name or ""
    if command.new or _renamed_here(w, command.table, column):
        return
    if _guarded_later(w, command.table, column):
        return
    w.report(
        DROP_NOT_NULL,
        f"DROP NOT NULL on {shown(command.table)}.{ident(column)}: the application version "
        "still running may rely on the column never being NULL (and the NULLs written from "
        "now on reach it) — make every deployed version cope with NULL first, or keep the "
        f"guarantee with CHECK ({ident(column)} IS NOT NULL) NOT VALID in the same migration",
    )


def _renamed_here(w: Walk, table: str, column: str) -> bool:
    """An earlier statement of this migration renamed a column of *table* to *column*: no
    running code knows it by that name (the old column kept aside after a swap)."""
    return any(
        isinstance(s.node, ast.RenameStmt)
        and s.node.renameType is ObjectType.OBJECT_COLUMN
        and s.node.newname == column
        and table_key(s.node.relation) == table
        for s in w.src.statements
        if s.index < w.stmt.index
    )


def _guarded_later(w: Walk, table: str, column: str) -> bool:
    """A later statement of this migration adds ``CHECK (column IS NOT NULL)`` to *table*:
    the guarantee is kept for every write (as an undo of ``SET NOT NULL`` does)."""
    for statement in w.src.statements:
        node = statement.node
        if statement.index <= w.stmt.index or not isinstance(node, ast.AlterTableStmt):
            continue
        if table_key(node.relation) != table:
            continue
        for cmd in node.cmds or ():
            definition = cmd.def_ if isinstance(cmd, ast.AlterTableCmd) else None
            if (
                isinstance(definition, ast.Constraint)
                and definition.contype is ConstrType.CONSTR_CHECK
                and _not_null_of(definition.raw_expr) == column
            ):
                return True
    return False


def _not_null_of(expr: Any) -> str | None:
    if isinstance(expr, ast.NullTest) and expr.nulltesttype is NullTestType.IS_NOT_NULL:
        parts = strings(expr.arg.fields) if isinstance(expr.arg, ast.ColumnRef) else []
        return parts[0] if len(parts) == 1 else None
    return None


@family.on_command(AlterTableType.AT_ColumnDefault)
def _drop_default(w: Walk, command: Command) -> None:
    if command.new or command.node.def_ is not None:  # SET DEFAULT
        return
    if _renamed_here(w, command.table, command.node.name or ""):
        return
    column = ident(command.node.name or "")
    w.report(
        DROP_DEFAULT,
        f"DROP DEFAULT on {shown(command.table)}.{column}: the application version still "
        f"running may insert rows without {column} and rely on the default (NULL, or 23502 "
        f"if it is NOT NULL) — stop relying on it in a deployed release first; "
        f"{_EXPAND_CONTRACT}",
    )


@family.on(ast.DropdbStmt)
def _drop_database(w: Walk, node: ast.DropdbStmt) -> None:
    w.report(
        DROP_DATABASE,
        f"DROP DATABASE {ident(node.dbname or '')} in a migration: it runs once per tenant, "
        "and a database holds every tenant (and it cannot run in a transaction anyway) — "
        "drop databases by hand, outside tenantmig",
    )


@family.on(ast.DropStmt)
def _drop_schema(w: Walk, node: ast.DropStmt) -> None:
    if node.removeType is not ObjectType.OBJECT_SCHEMA:
        return
    created = {
        s.node.schemaname
        for s in w.src.statements
        if s.index < w.stmt.index and isinstance(s.node, ast.CreateSchemaStmt)
    }
    for obj in node.objects or ():
        name = obj.sval if isinstance(obj, ast.String) else None
        if name is None or name in created:
            continue
        what = (
            f"the tenant's own schema {S}"
            if name == SENTINEL_NAME
            else f"schema {ident(name)}, which this migration did not create"
        )
        w.report(
            DROP_SCHEMA,
            f"DROP SCHEMA of {what} deletes every object in it (for a shared schema: every "
            "tenant's dependency at once) — drop the objects a migration created one by one; "
            "a tenant is removed by hand, outside the migrations",
        )
