"""Columns and table definitions: adding or changing a column in a way that rewrites the table
or fails on existing rows, and ``CREATE TABLE (LIKE ...)`` copying what it should not."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, TableLikeOption

from ..source import walk
from ._common import WARNING, dotted, ident, name_key, shown, strings, table_key
from ._facts import Command
from ._names import SERIAL_TYPES
from ._state import ColumnType, coercion, column_type
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
"""Volatile built-ins named as such in the message (every other unknown function is flagged
too, as not known to be immutable or stable)."""
_KNOWN_SAFE = frozenset(
    {
        # stable: the transaction's or the session's values, the same for every row
        "now",
        "transaction_timestamp",
        "statement_timestamp",
        "current_setting",
        "current_database",
        "current_schema",
        "to_char",
        "to_timestamp",
        "to_date",
        "age",
        # immutable
        "abs",
        "round",
        "trunc",
        "floor",
        "ceil",
        "lower",
        "upper",
        "initcap",
        "length",
        "substr",
        "substring",
        "replace",
        "trim",
        "btrim",
        "ltrim",
        "rtrim",
        "lpad",
        "rpad",
        "left",
        "right",
        "concat",
        "concat_ws",
        "format",
        "md5",
        "date_trunc",
        "date_part",
        "make_date",
        "make_time",
        "make_interval",
        "make_timestamp",
        "make_timestamptz",
        "timezone",
        "int4range",
        "int8range",
        "numrange",
        "daterange",
        "tsrange",
        "tstzrange",
        "array_fill",
        "jsonb_build_object",
        "jsonb_build_array",
        "json_build_object",
        "json_build_array",
        "to_jsonb",
        "to_json",
        "jsonb_object",
        "json_object",
    }
)
"""Built-in functions known to be immutable or stable: a default calling only these is
computed once for the whole ``ADD COLUMN`` (PostgreSQL 11+), so it does not rewrite."""
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
    rewrite = _rewrite_reason(column, constraints, w.state.stable_functions)
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


def _rewrite_reason(
    column: ast.ColumnDef, constraints: list[ast.Constraint], non_volatile: frozenset[str]
) -> str:
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
            reason = _volatile_call(constraint.raw_expr, non_volatile)
            if reason:
                return reason
    return ""


def _volatile_call(expr: ast.Node | None, non_volatile: frozenset[str]) -> str:
    """Why the default *expr* is computed row by row: the first function it calls that is a
    known volatile built-in, or neither a known-safe built-in nor a function the migrations
    created IMMUTABLE or STABLE (*non_volatile*); '' when there is none."""
    for item in walk(expr):
        if not isinstance(item, ast.FuncCall):
            continue
        parts = strings(item.funcname)
        if not parts:
            continue
        name = parts[-1].lower()
        builtin = len(parts) == 1 or parts[0] == "pg_catalog"
        if name in _VOLATILE:
            return f"the volatile default {parts[-1]}()"
        if name_key(parts) in non_volatile or (builtin and name in _KNOWN_SAFE):
            continue
        return (
            f"a default calling {dotted(parts)}(), which is not known to be IMMUTABLE or "
            "STABLE (a function is VOLATILE unless declared otherwise, and a volatile default "
            "is computed for every row)"
        )
    return ""


@family.on_command(AlterTableType.AT_AlterColumnType)
def _alter_type(w: Walk, command: Command) -> None:
    definition, table, column = command.node.def_, command.table, command.node.name or ""
    if command.new or not isinstance(definition, ast.ColumnDef):
        return
    target = column_type(definition.typeName)
    old = w.state.columns.get((table, column))
    tenant = ""
    if target is not None and old is not None:
        old, tenant = _worst_tenant(w, table, column, old, target)
    what = f"ALTER COLUMN {ident(column)} TYPE {target or '?'} on {shown(table)}"
    if definition.raw_default is not None and not _plain_cast(definition, column):
        reason = "with a USING expression computes every row anew: it rewrites the table"
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
                f"{what} from {old}{tenant}: timestamp -> timestamptz skips the rewrite only "
                "when the session TimeZone is UTC (PG 12+); otherwise every row is rewritten under "
                "ACCESS EXCLUSIVE — set TimeZone to UTC for this migration and check, or "
                f"{_SWAP}",
                severity=WARNING,
            )
            return
        reason = f"from {old}{tenant} is not binary-coercible: it rewrites the table"
    w.report(
        ALTER_COLUMN_TYPE,
        f"{what} {reason} and rebuilds its indexes under ACCESS EXCLUSIVE — {_SWAP}",
    )


_VERDICTS = ("same", "binary", "timezone", "rewrite")


def _worst_tenant(
    w: Walk, table: str, column: str, old: ColumnType, target: ColumnType
) -> tuple[ColumnType, str]:
    """The type the change is judged from: where the tenants' catalog says tenants hold
    different types, the worst tenant's, with `` (in tenant: type)`` to name it."""
    held = w.state.tenant_types.get((table, column), ())
    if old not in {t for _, t in held}:
        # Changed by a migration since the catalog was read: every tenant holds *old* now.
        return old, ""
    tenant, worst = max(held, key=lambda h: _VERDICTS.index(coercion(h[1], target)))
    return worst, f" (in {tenant}: {worst})"


def _plain_cast(definition: ast.ColumnDef, column: str) -> bool:
    """The ``USING`` of *definition* is just *column*, or *column* cast to the new type: it
    changes nothing the types alone do not decide (``USING email::text``)."""
    expr = definition.raw_default
    if isinstance(expr, ast.TypeCast):
        if column_type(expr.typeName) != column_type(definition.typeName):
            return False
        expr = expr.arg
    return isinstance(expr, ast.ColumnRef) and strings(expr.fields) == [column]


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
