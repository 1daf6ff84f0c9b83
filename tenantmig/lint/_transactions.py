"""Transactions, session settings and enum values: what the engine's transaction around a
migration makes unsafe or impossible, and settings that leak out of the migration."""

from __future__ import annotations

from typing import Any

from pglast import ast
from pglast.enums import TransactionStmtKind

from ..source import walk
from ._common import NO_TX, WARNING, S, dotted, shown, strings
from ._walker import Family, Walk

family = Family("transactions")

ENUM_VALUE_USED_SAME_MIGRATION = family.rule(
    "enum-value-used-same-migration",
    "a value added by ALTER TYPE ... ADD VALUE used later in the same transaction (55P04)",
)
ENUM_VALUE_WITHOUT_IF_NOT_EXISTS = family.rule(
    "enum-value-without-if-not-exists",
    "ALTER TYPE ... ADD VALUE without IF NOT EXISTS (a retry fails: values cannot be dropped)",
    WARNING,
)
UNBATCHED_DML = family.rule(
    "unbatched-dml",
    "UPDATE, DELETE or MERGE of an existing table in a migration that also changes the schema "
    "(backfill in a Python migration with ctx.backfill)",
)
TRANSACTION_CONTROL = family.rule(
    "transaction-control",
    "BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ... in a migration file (the engine owns the "
    "transaction)",
)
SET_SEARCH_PATH = family.rule(
    "set-search-path", "SET / RESET search_path in a migration (qualify names instead)"
)

_TRANSACTION_WORDS = {
    TransactionStmtKind.TRANS_STMT_BEGIN: "BEGIN",
    TransactionStmtKind.TRANS_STMT_START: "START TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT: "COMMIT",
    TransactionStmtKind.TRANS_STMT_ROLLBACK: "ROLLBACK",
    TransactionStmtKind.TRANS_STMT_SAVEPOINT: "SAVEPOINT",
    TransactionStmtKind.TRANS_STMT_RELEASE: "RELEASE SAVEPOINT",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_TO: "ROLLBACK TO SAVEPOINT",
    TransactionStmtKind.TRANS_STMT_PREPARE: "PREPARE TRANSACTION",
    TransactionStmtKind.TRANS_STMT_COMMIT_PREPARED: "COMMIT PREPARED",
    TransactionStmtKind.TRANS_STMT_ROLLBACK_PREPARED: "ROLLBACK PREPARED",
}


# --- enum values ----------------------------------------------------------------------------


@family.on_every_statement
def _enum_values_used(w: Walk, node: ast.Node) -> None:
    added = w.facts.enum_added
    if not added:
        return
    for item in walk(node):
        if isinstance(item, ast.A_Const) and isinstance(item.val, ast.String):
            value = item.val.sval
            if value in added:
                type_name, offset = added[value]
                w.report(
                    ENUM_VALUE_USED_SAME_MIGRATION,
                    f"'{value}' was added to {type_name} by ALTER TYPE ... ADD VALUE at line "
                    f"{w.line(offset)} of this same transaction, and PostgreSQL refuses to use "
                    "it before commit (55P04) — use the new value in a later migration",
                    w.literal_offset(value),
                )


@family.on(ast.AlterEnumStmt)
def _add_value(w: Walk, node: ast.AlterEnumStmt) -> None:
    if node.oldVal is not None or node.newVal is None or node.skipIfNewValExists:
        return
    w.report(
        ENUM_VALUE_WITHOUT_IF_NOT_EXISTS,
        f"ADD VALUE '{node.newVal}' to {dotted(strings(node.typeName))} without IF NOT EXISTS "
        "fails on a retry once the value exists (enum values cannot be dropped) — write ADD "
        "VALUE IF NOT EXISTS",
    )


# --- the engine's transaction ---------------------------------------------------------------


@family.at_end
def _unbatched_dml(w: Walk) -> None:
    """Judged at the end: an UPDATE is only a problem if the migration also changes the
    schema, whose locks it then holds for as long as the update runs."""
    if not w.facts.has_ddl:
        return
    for write in w.facts.writes:
        w.report_at(
            UNBATCHED_DML,
            write.statement,
            write.offset,
            f"{write.verb} of {shown(write.table)} in a migration that also changes the "
            "schema: every row it touches stays locked, and so do the DDL locks, until the "
            "migration commits — backfill in a separate Python migration with ctx.backfill "
            "(keyset batches, each committed on its own)",
        )


@family.on(ast.TransactionStmt)
def _transaction_control(w: Walk, node: ast.TransactionStmt) -> None:
    word = _TRANSACTION_WORDS.get(node.kind, "BEGIN") if node.kind is not None else "BEGIN"
    w.report(
        TRANSACTION_CONTROL,
        f"{word} in a migration file: the engine owns the transaction and records the version "
        f"in it — remove it; use the {NO_TX} header for statements that cannot run in a "
        "transaction",
    )


# --- settings -------------------------------------------------------------------------------


@family.on(ast.VariableSetStmt)
def _set(w: Walk, node: ast.VariableSetStmt) -> None:
    if (node.name or "").lower() == "search_path":
        _search_path(w)


@family.on_every_statement
def _set_config(w: Walk, node: ast.Node) -> None:
    for item in walk(node):
        if (
            isinstance(item, ast.FuncCall)
            and strings(item.funcname)[-1:] == ["set_config"]
            and item.args
            and _string_constant(item.args[0]).lower() == "search_path"
        ):
            _search_path(w, item.location)


def _search_path(w: Walk, at: int | None = None) -> None:
    w.report(
        SET_SEARCH_PATH,
        "setting search_path in a migration changes how every later name resolves for the "
        "session (and leaks to the next user of a pooled connection or PgBouncer) — qualify "
        f"every name as {S}.name instead",
        at,
    )


def _string_constant(node: Any) -> str:
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return node.val.sval or ""
    return ""
