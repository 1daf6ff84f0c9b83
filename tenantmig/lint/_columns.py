"""Columns and table definitions: adding or changing a column in a way that rewrites the table
or fails on existing rows, and ``CREATE TABLE (LIKE ...)`` copying what it should not."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, TableLikeOption

from ..source import walk
from ._common import WARNING, ident, shown, strings, table_key
from ._facts import Command
from ._names import SERIAL_TYPES
from ._state import coercion, column_type
from ._walker import Family, Walk

family = Family("columns")

ADD_COLUMN_NOT_NULL_NO_DEFAULT = family.rule(
    "add-column-not-null-no-default",
    "ADD COLUMN ... NOT NULL without DEFAULT on an existing table",
)
ADD_COLUMN_VOLATILE_DEFAULT = family.rule(
    "add-column-volatile-default",
    "ADD COLUMN with a volatile default, serial, identity or stored generated value: rewrites "
    "the table",
)
ALTER_COLUMN_TYPE = family.rule(
    "alter-column-type",
    "ALTER COLUMN TYPE that is not binary-coercible (rewrites the table); timestamp -> "
    "timestamptz is a warning (depends on TimeZone)",
)
PARTITION_LIKE_INDEXES = family.rule(
    "partition-like-indexes",
    "CREATE TABLE (LIKE t INCLUDING ALL/INDEXES) PARTITION BY: the copied unique indexes lack "
    "the partition key",
)
LIKE_COPIES_DEFAULTS = family.rule(
    "like-copies-defaults",
    "CREATE TABLE (LIKE t INCLUDING ALL/DEFAULTS) copies nextval() defaults that keep using "
    "t's sequence",
    WARNING,
)

_VOLATILE = frozenset(
    {
        "random",
        "random_normal",
        "clock_timestamp",
        "timeofday",
        "gen_random_uuid",
        "uuidv4",
        "uuidv7",
        "uuid_generate_v1",
        "uuid_generate_v1mc",
        "uuid_generate_v4",
        "nextval",
        "currval",
        "lastval",
        "setval",
        "txid_current",
        "pg_current_xact_id",
    }
)
_SWAP = (
    "use the 5-step swap: add a new column, keep it in sync (trigger), backfill in batches "
    "(Python migration, ctx.backfill), switch reads, drop the old column in a later release"
)


@family.on_command(AlterTableType.AT_AddColumn)
def _add_column(w: Walk, command: Command) -> None:
    column, table = command.node.def_, command.table
    if command.new or not isinstance(column, ast.ColumnDef):
        return
    name = ident(column.colname or "")
    at = column.location
    constraints = [c for c in column.constraints or () if isinstance(c, ast.Constraint)]
    kinds = {c.contype for c in constraints}
    rewrite = _rewrite_reason(column, constraints)
    if rewrite:
        w.report(
            ADD_COLUMN_VOLATILE_DEFAULT,
            f"ADD COLUMN {name} with {rewrite} rewrites every row of {shown(table)} under "
            "ACCESS EXCLUSIVE — add it nullable without that default, SET DEFAULT for new "
            "rows, and backfill existing rows in batches (Python migration, ctx.backfill)",
            at,
        )
    elif (column.is_not_null or ConstrType.CONSTR_NOTNULL in kinds) and not (
        kinds & {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY}
    ):
        w.report(
            ADD_COLUMN_NOT_NULL_NO_DEFAULT,
            f"ADD COLUMN {name} NOT NULL without DEFAULT on existing table {shown(table)} "
            "fails as soon as it has a row (23502) — add it nullable (or with a constant "
            "DEFAULT), backfill, then SET NOT NULL through a CHECK validated in a later "
            "migration",
            at,
        )


def _rewrite_reason(column: ast.ColumnDef, constraints: list[ast.Constraint]) -> str:
    """Why adding *column* rewrites the table, or ''."""
    type_parts = strings(column.typeName.names) if column.typeName else []
    if len(type_parts) == 1 and type_parts[0].lower() in SERIAL_TYPES:
        return f"type {type_parts[0]} (a nextval() default)"
    for constraint in constraints:
        if constraint.contype is ConstrType.CONSTR_IDENTITY:
            return "GENERATED ... AS IDENTITY (every row gets a nextval())"
        if constraint.contype is ConstrType.CONSTR_GENERATED and constraint.generated_kind != "v":
            return "a stored generated value"
        if constraint.contype is ConstrType.CONSTR_DEFAULT:
            for item in walk(constraint.raw_expr):
                if isinstance(item, ast.FuncCall):
                    name = strings(item.funcname)[-1:]
                    if name and name[0].lower() in _VOLATILE:
                        return f"the volatile default {name[0]}()"
    return ""


@family.on_command(AlterTableType.AT_AlterColumnType)
def _alter_type(w: Walk, command: Command) -> None:
    definition, table, column = command.node.def_, command.table, command.node.name or ""
    if command.new or not isinstance(definition, ast.ColumnDef):
        return
    target = column_type(definition.typeName)
    old = w.state.columns.get((table, column))
    what = f"ALTER COLUMN {ident(column)} TYPE {target or '?'} on {shown(table)}"
    if definition.raw_default is not None:
        reason = "with a USING expression rewrites the table"
    elif definition.collClause is not None:
        reason = "with a new collation rebuilds its indexes"
    elif old is None or target is None:
        w.report(
            ALTER_COLUMN_TYPE,
            f"{what}: the column's current type is not known from earlier migrations, so it "
            "cannot be proven binary-coercible (a rewrite under ACCESS EXCLUSIVE otherwise) — "
            "if it is a widening (varchar(n) -> varchar(m >= n) or text, more numeric "
            f"precision), allow it with that reason; else {_SWAP}",
        )
        return
    else:
        verdict = coercion(old, target)
        if verdict in ("same", "binary"):
            return
        if verdict == "timezone":
            w.report(
                ALTER_COLUMN_TYPE,
                f"{what} from {old}: timestamp -> timestamptz skips the rewrite only when the "
                "session TimeZone is UTC (PG 12+); otherwise every row is rewritten under "
                "ACCESS EXCLUSIVE — set TimeZone to UTC for this migration and check, or "
                f"{_SWAP}",
                severity=WARNING,
            )
            return
        reason = f"from {old} is not binary-coercible: it rewrites the table"
    w.report(
        ALTER_COLUMN_TYPE,
        f"{what} {reason} and rebuilds its indexes under ACCESS EXCLUSIVE — {_SWAP}",
    )


@family.on(ast.CreateStmt)
def _like(w: Walk, node: ast.CreateStmt) -> None:
    partitioned = node.partspec is not None
    for like in node.tableElts or ():
        if not isinstance(like, ast.TableLikeClause):
            continue
        options = like.options or 0
        source = shown(table_key(like.relation))
        at = like.relation.location if like.relation else None
        if partitioned and options & TableLikeOption.CREATE_TABLE_LIKE_INDEXES:
            w.report(
                PARTITION_LIKE_INDEXES,
                f"LIKE {source} INCLUDING ALL/INDEXES copies its primary key and unique "
                "indexes, but on a partitioned table they must include the partition key, so "
                f"this fails — use LIKE {source} INCLUDING ALL EXCLUDING INDEXES and declare "
                "e.g. PRIMARY KEY (id, created_at); foreign keys to the old key must change too",
                at,
            )
        if options & TableLikeOption.CREATE_TABLE_LIKE_DEFAULTS:
            w.report(
                LIKE_COPIES_DEFAULTS,
                f"LIKE {source} INCLUDING ALL/DEFAULTS copies nextval() defaults that keep "
                f"using {source}'s sequence, tying the new table to it — exclude defaults "
                "(EXCLUDING DEFAULTS) and give the new table its own identity column or "
                "sequence",
                at,
            )
