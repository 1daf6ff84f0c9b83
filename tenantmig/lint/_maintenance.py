"""Maintenance statements: REINDEX, CLUSTER, VACUUM FULL, TRUNCATE and DETACH PARTITION, which
lock a busy table for as long as they work, or delete its rows, on every tenant in turn."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, DropBehavior, ReindexObjectType

from ._common import NO_TX, SENTINEL_NAME, WARNING, S, ident, shown, table_key
from ._facts import NOT_DDL, Command
from ._walker import Family, Walk

family = Family("maintenance")

REINDEX_NOT_CONCURRENT = family.rule(
    "reindex-not-concurrent",
    "REINDEX (index, table or schema) without CONCURRENTLY (blocks writes, or reads too, for "
    "the whole rebuild)",
)
REWRITE_MAINTENANCE = family.rule(
    "cluster-vacuum-full",
    "CLUSTER or VACUUM FULL: rewrites the table under ACCESS EXCLUSIVE",
)
DETACH_NOT_CONCURRENT = family.rule(
    "detach-partition-not-concurrent",
    "ALTER TABLE ... DETACH PARTITION without CONCURRENTLY (ACCESS EXCLUSIVE on the parent)",
)
DETACH_CONCURRENTLY_PENDING = family.rule(
    "detach-partition-pending",
    "DETACH PARTITION ... CONCURRENTLY: an interrupted one is left pending until DETACH "
    "PARTITION ... FINALIZE",
    WARNING,
)
TRUNCATE_CASCADE = family.rule(
    "truncate-cascade",
    "TRUNCATE ... CASCADE (also empties every table that references it)",
)
TRUNCATE_EXISTING_TABLE = family.rule(
    "truncate-existing-table",
    "TRUNCATE of an existing table in a migration that also changes the schema",
)

# A TRUNCATE alone does not make a migration one that changes the schema.
_NOT_DDL = NOT_DDL | {"TruncateStmt"}
"""Statements that do not change the schema (TRUNCATE itself included: a migration of
TRUNCATEs alone is a data migration, judged by ``truncate-cascade`` only)."""

_REINDEX_KINDS = {
    ReindexObjectType.REINDEX_OBJECT_INDEX: "INDEX",
    ReindexObjectType.REINDEX_OBJECT_TABLE: "TABLE",
    ReindexObjectType.REINDEX_OBJECT_SCHEMA: "SCHEMA",
    ReindexObjectType.REINDEX_OBJECT_SYSTEM: "SYSTEM",
    ReindexObjectType.REINDEX_OBJECT_DATABASE: "DATABASE",
}


@family.on(ast.ReindexStmt)
def _reindex(w: Walk, node: ast.ReindexStmt) -> None:
    params = node.params or ()
    if any(isinstance(p, ast.DefElem) and p.defname == "concurrently" for p in params):
        return
    kind = _REINDEX_KINDS.get(node.kind, "TABLE") if node.kind is not None else "TABLE"
    if node.relation is not None:
        target = shown(table_key(node.relation))
    else:
        target = S if node.name == SENTINEL_NAME else ident(node.name or "")
    if node.relation is not None and table_key(node.relation) in (
        w.facts.created if kind == "TABLE" else w.facts.created_indexes
    ):
        return
    w.report(
        REINDEX_NOT_CONCURRENT,
        f"REINDEX {kind} {target} without CONCURRENTLY blocks every write to the tables it "
        "covers (and every read that would use their indexes) for the whole rebuild — use REINDEX "
        f"(CONCURRENTLY) {kind} ... (PostgreSQL 12+), alone in a {NO_TX} migration",
    )


@family.on(ast.ClusterStmt)
def _cluster(w: Walk, node: ast.ClusterStmt) -> None:
    table = table_key(node.relation) if node.relation is not None else ""
    if table and table in w.facts.created:
        return
    what = f"CLUSTER {shown(table)}" if table else "CLUSTER (every clustered table)"
    _rewrite(w, what)


@family.on(ast.VacuumStmt)
def _vacuum(w: Walk, node: ast.VacuumStmt) -> None:
    options = [o for o in node.options or () if isinstance(o, ast.DefElem)]
    full = any(o.defname == "full" and _true(o.arg) for o in options)
    if not node.is_vacuumcmd or not full:
        return
    tables = [
        table_key(r.relation)
        for r in node.rels or ()
        if isinstance(r, ast.VacuumRelation) and r.relation is not None
    ]
    if tables and all(t in w.facts.created for t in tables):
        return
    names = ", ".join(shown(t) for t in tables) if tables else "(every table)"
    _rewrite(w, f"VACUUM FULL {names}")


def _true(arg: object) -> bool:
    """A DefElem's boolean value: absent means true (``VACUUM (FULL)``)."""
    if arg is None:
        return True
    if isinstance(arg, ast.Boolean):
        return bool(arg.boolval)
    if isinstance(arg, ast.Integer):
        return bool(arg.ival)
    if isinstance(arg, ast.String):
        return (arg.sval or "").lower() in ("true", "on", "yes", "1")
    return True


def _rewrite(w: Walk, what: str) -> None:
    w.report(
        REWRITE_MAINTENANCE,
        f"{what} rewrites the whole table under ACCESS EXCLUSIVE: no read and no write until "
        "it is done — leave it out of migrations; reclaim space online with an extension "
        "such as pg_repack or pg_squeeze, run by an operator, and let plain VACUUM (which "
        "does not block) do the routine work",
    )


@family.on_command(AlterTableType.AT_DetachPartition)
def _detach(w: Walk, command: Command) -> None:
    definition = command.node.def_
    if not isinstance(definition, ast.PartitionCmd) or command.new:
        return
    partition = shown(table_key(definition.name))
    parent = shown(command.table)
    if definition.concurrent:
        if w.transactional:
            return  # concurrently-in-transaction: it cannot even start
        w.report(
            DETACH_CONCURRENTLY_PENDING,
            f"DETACH PARTITION {partition} CONCURRENTLY runs in two transactions: if it is "
            "interrupted (cancelled, lock timeout, runner killed) the partition is left "
            "pending, still attached, and every later DETACH of it fails — make the retry "
            f"finish it: ALTER TABLE {parent} DETACH PARTITION {partition} FINALIZE, in a "
            f"{NO_TX} migration of its own",
        )
    else:
        w.report(
            DETACH_NOT_CONCURRENT,
            f"DETACH PARTITION {partition} from {parent} without CONCURRENTLY takes ACCESS "
            "EXCLUSIVE on the parent table, blocking every read and write of every partition "
            "— use DETACH PARTITION ... CONCURRENTLY (PostgreSQL 14+), alone in a "
            f"{NO_TX} migration",
        )


@family.on(ast.TruncateStmt)
def _truncate_cascade(w: Walk, node: ast.TruncateStmt) -> None:
    if node.behavior is not DropBehavior.DROP_CASCADE:
        return
    names = ", ".join(
        shown(table_key(r)) for r in node.relations or () if isinstance(r, ast.RangeVar)
    )
    w.report(
        TRUNCATE_CASCADE,
        f"TRUNCATE {names} CASCADE also empties every table with a foreign key to it, and "
        "theirs in turn, whatever they are — name every table to empty in the TRUNCATE "
        "itself, without CASCADE (it then fails instead of deleting more than you meant)",
    )


@family.at_end
def _truncate_existing(w: Walk) -> None:
    """Judged at the end, like ``unbatched-dml``: a TRUNCATE is a hazard of a migration that
    also changes the schema, whose ACCESS EXCLUSIVE locks it then shares."""
    statements = w.src.statements
    if not any(type(s.node).__name__ not in _NOT_DDL for s in statements):
        return
    created: set[str] = set()
    for statement in statements:
        node = statement.node
        if isinstance(node, ast.CreateStmt):
            created.add(table_key(node.relation))
        elif isinstance(node, ast.CreateTableAsStmt) and node.into is not None:
            created.add(table_key(node.into.rel))
        elif isinstance(node, ast.TruncateStmt):
            existing = [
                table_key(r)
                for r in node.relations or ()
                if isinstance(r, ast.RangeVar) and table_key(r) not in created
            ]
            if existing:
                w.report_at(
                    TRUNCATE_EXISTING_TABLE,
                    statement.index,
                    statement.start,
                    f"TRUNCATE of {', '.join(shown(t) for t in existing)} in a migration that "
                    "also changes the schema deletes every row of a table running code uses "
                    "and holds ACCESS EXCLUSIVE on it until the migration commits — empty it "
                    "in a migration of its own (or stop using the table first, then drop it "
                    "in a later release)",
                )


