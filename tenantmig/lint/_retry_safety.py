"""Retry safety: a ``no-transaction`` migration is not rolled back when it fails half-way
(each statement commits on its own), so its retry (or ``tenantmig resume``) runs again the
statements that had already committed. Each must then cope with finding its work done."""

from __future__ import annotations

from typing import Any

from pglast import ast
from pglast.enums import AlterTableType, ObjectType

from ._common import NO_TX, WARNING, dotted, ident, strings, table_key
from ._shared import targets
from ._walker import Family, Walk

family = Family("retry safety")

NOT_RETRYABLE = family.rule(
    "not-retryable",
    "in a no-transaction migration, a statement a retry after a half-way failure breaks: "
    "CREATE/ADD COLUMN without IF NOT EXISTS, DROP without IF EXISTS, CREATE TYPE/DOMAIN, "
    "ADD CONSTRAINT, RENAME (indexes built CONCURRENTLY: concurrently-not-retryable)",
    WARNING,
)

_TRANSACTIONAL = (
    f"or move it to a transactional migration (only what cannot run in a transaction belongs "
    f"under {NO_TX})"
)
_IF_NOT_EXISTS = {
    "CreateStmt": "CREATE TABLE",
    "CreateTableAsStmt": "CREATE TABLE AS",
    "CreateSeqStmt": "CREATE SEQUENCE",
    "CreateSchemaStmt": "CREATE SCHEMA",
    "CreateExtensionStmt": "CREATE EXTENSION",
}
_OR_REPLACE = {
    "ViewStmt": "CREATE VIEW",
    "CreateFunctionStmt": "CREATE FUNCTION",
    "CreateTrigStmt": "CREATE TRIGGER",
}
_NO_IF_FORM = {
    "CreateEnumStmt": "CREATE TYPE",
    "CompositeTypeStmt": "CREATE TYPE",
    "CreateRangeStmt": "CREATE TYPE",
    "CreateDomainStmt": "CREATE DOMAIN",
    "CreatePolicyStmt": "CREATE POLICY",
}
"""Statements PostgreSQL gives no IF NOT EXISTS (types: none of CREATE TYPE's forms has it)."""


def _warn(w: Walk, what: str, fix: str, at: int | None = None) -> None:
    w.report(
        NOT_RETRYABLE,
        f"{what} in a {NO_TX} migration: if the migration fails after it committed, the "
        f"retry runs it again and it fails — {fix}, {_TRANSACTIONAL}",
        at,
    )


@family.on_every_statement
def _statement(w: Walk, node: Any) -> None:
    if w.transactional:
        return
    name = type(node).__name__
    target = _target(node)
    if name in _IF_NOT_EXISTS and not node.if_not_exists:
        verb = _IF_NOT_EXISTS[name]
        _warn(w, f"{verb} {target} without IF NOT EXISTS", f"write {verb} IF NOT EXISTS")
    elif name in _OR_REPLACE and not node.replace:
        verb = _OR_REPLACE[name]
        replacing = verb.replace("CREATE", "CREATE OR REPLACE")
        _warn(w, f"{verb} {target} without OR REPLACE", f"write {replacing}")
    elif name in _NO_IF_FORM:
        _warn(
            w,
            f"{_NO_IF_FORM[name]} {target} (PostgreSQL has no IF NOT EXISTS for it)",
            "guard it in a DO block that checks the catalog first",
        )
    elif isinstance(node, ast.RenameStmt):
        _warn(
            w,
            f"RENAME of {target} (it cannot run twice: the old name is gone)",
            "guard it in a DO block that checks the catalog first",
        )
    elif isinstance(node, ast.IndexStmt) and not node.concurrent and not node.if_not_exists:
        _warn(w, "CREATE INDEX without IF NOT EXISTS", "name it and write IF NOT EXISTS")
    elif isinstance(node, ast.DropStmt) and not node.missing_ok:
        if node.removeType is ObjectType.OBJECT_INDEX and node.concurrent:
            return  # concurrently-not-retryable says it
        kind = node.removeType.name.removeprefix("OBJECT_").replace("_", " ") if (
            node.removeType is not None
        ) else ""
        names = ", ".join(dotted(_parts(o)) for o in node.objects or ())
        _warn(w, f"DROP {kind} {names} without IF EXISTS", f"write DROP {kind} IF EXISTS")
    elif isinstance(node, ast.AlterTableStmt) and node.objtype is ObjectType.OBJECT_TABLE:
        for command in node.cmds or ():
            if isinstance(command, ast.AlterTableCmd):
                _command(w, table_key(node.relation), command)


def _command(w: Walk, table: str, command: ast.AlterTableCmd) -> None:
    subtype, definition = command.subtype, command.def_
    if subtype is AlterTableType.AT_AddColumn and not command.missing_ok:
        column = ident(definition.colname or "") if isinstance(definition, ast.ColumnDef) else ""
        _warn(
            w,
            f"ADD COLUMN {column} without IF NOT EXISTS",
            "write ADD COLUMN IF NOT EXISTS",
            definition.location if isinstance(definition, ast.ColumnDef) else None,
        )
    elif subtype in (AlterTableType.AT_DropColumn, AlterTableType.AT_DropConstraint) and (
        not command.missing_ok
    ):
        what = "COLUMN" if subtype is AlterTableType.AT_DropColumn else "CONSTRAINT"
        _warn(
            w,
            f"DROP {what} {ident(command.name or '')} without IF EXISTS",
            f"write DROP {what} IF EXISTS",
        )
    elif subtype is AlterTableType.AT_AddConstraint and isinstance(definition, ast.Constraint):
        name = ident(definition.conname or "")
        _warn(
            w,
            f"ADD CONSTRAINT {name} (which has no IF NOT EXISTS form)",
            f"write ALTER TABLE ... DROP CONSTRAINT IF EXISTS {name} first (when nothing "
            "relies on it yet) or guard it in a DO block",
        )


def _target(node: Any) -> str:
    """What *node* creates or changes, for messages."""
    on = " ".join(dotted([p for p in parts if p]) for parts in targets(node)[:1])
    if isinstance(node, ast.CreateTrigStmt):
        return f"{ident(node.trigname or '')} on {on}"
    if isinstance(node, ast.CreatePolicyStmt):
        return f"{ident(node.policy_name or '')} on {on}"
    if isinstance(node, ast.CreateSchemaStmt):
        return ident(node.schemaname or "")
    if isinstance(node, ast.CreateExtensionStmt):
        return ident(node.extname or "")
    if isinstance(node, ast.CreateRangeStmt):
        return dotted(strings(node.typeName))
    return on


def _parts(obj: Any) -> list[str]:
    if isinstance(obj, ast.TypeName):
        return strings(obj.names)
    if isinstance(obj, ast.ObjectWithArgs):
        return strings(obj.objname)
    if isinstance(obj, ast.String):
        return [obj.sval or ""]
    return strings(obj)
