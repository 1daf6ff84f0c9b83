"""Indexes and CONCURRENTLY: builds and drops that block writes, and concurrent forms that
cannot run in a transaction or cannot be retried."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ObjectType

from ._common import NO_TX, WARNING, dotted, ident, name_key, shown, strings, table_key
from ._facts import Command
from ._walker import Family, Walk

family = Family("indexes")

INDEX_NOT_CONCURRENT = family.rule(
    "index-not-concurrent",
    "CREATE INDEX without CONCURRENTLY on a table that already exists",
)
DROP_INDEX_NOT_CONCURRENT = family.rule(
    "drop-index-not-concurrent", "DROP INDEX without CONCURRENTLY"
)
CONCURRENTLY_IN_TRANSACTION = family.rule(
    "concurrently-in-transaction",
    "CREATE/DROP INDEX, REINDEX or DETACH PARTITION CONCURRENTLY in a transactional migration "
    "(needs -- tenantmig:no-transaction)",
)
CONCURRENTLY_NOT_RETRYABLE = family.rule(
    "concurrently-not-retryable",
    "in a no-transaction migration, CREATE INDEX CONCURRENTLY without a name or IF NOT EXISTS, "
    "DROP INDEX CONCURRENTLY without IF EXISTS (a retry after the runner was killed fails or "
    "duplicates the index)",
    WARNING,
)


def _concurrently(w: Walk, what: str) -> None:
    if w.transactional:
        w.report(
            CONCURRENTLY_IN_TRANSACTION,
            f"{what} CONCURRENTLY cannot run inside a transaction block (25001) and this "
            f"migration is transactional — put it alone in a migration with the {NO_TX} header",
        )


@family.on(ast.IndexStmt)
def _create_index(w: Walk, node: ast.IndexStmt) -> None:
    table = table_key(node.relation)
    if node.concurrent:
        _concurrently(w, "CREATE INDEX")
        _retryable_index(w, node)
    elif table not in w.facts.created:
        w.report(
            INDEX_NOT_CONCURRENT,
            f"CREATE INDEX on existing table {shown(table)} without CONCURRENTLY blocks every "
            "write to it (SHARE lock) for the whole build — use CREATE INDEX CONCURRENTLY, "
            f"alone in a {NO_TX} migration",
        )


def _retryable_index(w: Walk, node: ast.IndexStmt) -> None:
    """A no-transaction CREATE INDEX CONCURRENTLY is not rolled back: if its runner is killed
    mid-build, the server finishes the build, and the retry must cope."""
    if w.transactional:
        return
    if not node.idxname:
        w.report(
            CONCURRENTLY_NOT_RETRYABLE,
            "CREATE INDEX CONCURRENTLY without a name gets a new name on every attempt, so a "
            "retry after an interrupted build adds a second index (or an INVALID one that "
            "slows every write) — name the index and add IF NOT EXISTS",
        )
    elif not node.if_not_exists:
        w.report(
            CONCURRENTLY_NOT_RETRYABLE,
            f"CREATE INDEX CONCURRENTLY {ident(node.idxname)} without IF NOT EXISTS fails "
            "(42P07) on every retry once a build that outlived its killed runner has finished "
            "— write CREATE INDEX CONCURRENTLY IF NOT EXISTS (tenantmig drops an INVALID "
            "leftover of the same name before a retry)",
        )


@family.on(ast.DropStmt)
def _drop_index(w: Walk, node: ast.DropStmt) -> None:
    if node.removeType is not ObjectType.OBJECT_INDEX:
        return
    if node.concurrent:
        _concurrently(w, "DROP INDEX")
        if not w.transactional and not node.missing_ok:
            w.report(
                CONCURRENTLY_NOT_RETRYABLE,
                "DROP INDEX CONCURRENTLY without IF EXISTS fails (42704) on the retry that "
                "follows a drop which finished after its runner was killed — write DROP INDEX "
                "CONCURRENTLY IF EXISTS",
            )
    for obj in node.objects or ():
        index = name_key(strings(obj))
        if not node.concurrent and index not in w.facts.created_indexes:
            w.report(
                DROP_INDEX_NOT_CONCURRENT,
                f"DROP INDEX {dotted(strings(obj))} without CONCURRENTLY takes ACCESS "
                "EXCLUSIVE on its table, queueing every read and write behind it — use DROP "
                f"INDEX CONCURRENTLY IF EXISTS, alone in a {NO_TX} migration",
            )


@family.on(ast.ReindexStmt)
def _reindex(w: Walk, node: ast.ReindexStmt) -> None:
    params = node.params or ()
    if any(isinstance(p, ast.DefElem) and p.defname == "concurrently" for p in params):
        _concurrently(w, "REINDEX")


@family.on_command(AlterTableType.AT_DetachPartition)
def _detach_partition(w: Walk, command: Command) -> None:
    definition = command.node.def_
    if isinstance(definition, ast.PartitionCmd) and definition.concurrent:
        _concurrently(w, "DETACH PARTITION")
