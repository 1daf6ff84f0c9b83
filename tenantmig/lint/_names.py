"""Which names a statement creates, alters, drops or references, and how they are qualified."""

from __future__ import annotations

from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from pglast import ast
from pglast.enums import ObjectType

from ..source import walk
from ._common import strings

BUILTIN_TYPES = frozenset(
    """
     bool boolean bytea char name int2 int4 int8 int2vector oid oidvector tid xid xid8 cid text
     json jsonb jsonpath xml point lseg path box polygon line circle float4 float8 money macaddr
     macaddr8 inet cidr aclitem bpchar varchar date time timetz timestamp timestamptz interval
     bit varbit numeric refcursor regproc regprocedure regoper regoperator regclass regcollation
     regtype regrole regnamespace regconfig regdictionary uuid pg_lsn tsvector gtsvector tsquery
     txid_snapshot pg_snapshot int4range int8range numrange tsrange tstzrange daterange
     int4multirange int8multirange nummultirange tsmultirange tstzmultirange datemultirange
     record cstring any anyarray anyelement anynonarray anyenum anyrange anymultirange
     anycompatible anycompatiblearray anycompatiblenonarray anycompatiblerange
     anycompatiblemultirange void trigger event_trigger language_handler internal fdw_handler
     index_am_handler table_am_handler tsm_handler pg_node_tree pg_ndistinct pg_dependencies
     pg_mcv_list pg_ddl_command unknown serial serial2 serial4 serial8 smallserial bigserial int
     integer smallint bigint real float decimal character
    """.split()  # noqa: SIM905 (a word list reads better than 120 quoted strings)
)
"""Type names from ``pg_catalog`` that may stay unqualified (keywords such as ``varchar`` or
``integer`` already come out of the parser as ``pg_catalog.*``)."""

BUILTIN_FUNCTIONS = frozenset(
    """
     abs age array_agg array_append array_length array_position array_remove array_to_string
     avg bool_and bool_or btrim ceil char_length clock_timestamp coalesce concat concat_ws
     count cume_dist current_date current_setting date_part date_trunc decode dense_rank
     encode exp extract first_value floor format gen_random_uuid generate_series
     generate_subscripts greatest hashtext initcap json_agg json_build_object jsonb_agg
     jsonb_build_array jsonb_build_object jsonb_object_agg jsonb_set lag last_value lead least
     left length ln log lower lpad ltrim max md5 min mod now nullif nth_value ntile overlay
     percent_rank position power random rank regexp_match regexp_matches regexp_replace
     regexp_split_to_array repeat replace reverse right round row_number rpad rtrim
     set_config sign split_part sqrt starts_with statement_timestamp string_agg strpos
     substr substring sum timeofday to_char to_date to_json to_jsonb to_number to_timestamp
     to_tsquery to_tsvector translate transaction_timestamp trim trunc unnest upper
    """.split()  # noqa: SIM905 (as BUILTIN_TYPES)
)
"""Common ``pg_catalog`` functions: a migration's own function of the same name is not what an
unqualified call of it means (``pg_catalog`` comes first in every ``search_path``), so such a
call is neither flagged nor qualified."""

_SEQUENCE_FUNCTIONS = frozenset({"nextval", "currval", "setval"})
SERIAL_TYPES = frozenset({"serial", "serial2", "serial4", "serial8", "smallserial", "bigserial"})

_RELATION_KINDS = {
    ObjectType.OBJECT_TABLE: "table",
    ObjectType.OBJECT_INDEX: "index",
    ObjectType.OBJECT_SEQUENCE: "sequence",
    ObjectType.OBJECT_VIEW: "view",
    ObjectType.OBJECT_MATVIEW: "materialized view",
    ObjectType.OBJECT_FOREIGN_TABLE: "foreign table",
}
_ROUTINE_KINDS = {
    ObjectType.OBJECT_FUNCTION: "function",
    ObjectType.OBJECT_PROCEDURE: "procedure",
    ObjectType.OBJECT_ROUTINE: "routine",
    ObjectType.OBJECT_AGGREGATE: "aggregate",
}
_TYPE_KINDS = {ObjectType.OBJECT_TYPE: "type", ObjectType.OBJECT_DOMAIN: "domain"}
_ON_TABLE_KINDS = {
    ObjectType.OBJECT_TRIGGER,
    ObjectType.OBJECT_POLICY,
    ObjectType.OBJECT_RULE,
    ObjectType.OBJECT_COLUMN,
    ObjectType.OBJECT_TABCONSTRAINT,
}


@dataclass(frozen=True)
class NameRef:
    """A (possibly qualified) name of a schema object, as written in a statement."""

    kind: str
    """``table``, ``index``, ``type``, ``function``, ..., for messages."""
    parts: tuple[str, ...]
    """The name's parts: ``(schema, name)`` or ``(name,)``."""
    location: int | None
    """Offset of the name's first token when the parser records it."""
    in_string: bool = False
    """Written inside a string constant (``nextval('name')``): *location* is the call's."""

    @property
    def schema(self) -> str | None:
        return self.parts[-2] if len(self.parts) >= 2 else None

    @property
    def name(self) -> str:
        return self.parts[-1]


def references(stmt: ast.Node, functions: Collection[str] = ()) -> Iterator[NameRef]:
    """Every name in *stmt* that must be qualified (or, when qualified, is checked).

    Skipped: CTE names, temporary relations, the index name of ``CREATE INDEX`` (it cannot be
    qualified), built-in type names, ``%TYPE`` references, unqualified calls of functions
    other than *functions* (those the migrations created: the others are built-in, or an
    extension's); qualified function calls are returned so their schema is checked. Nothing
    inside a string is looked at (function bodies), but for ``nextval('name')`` and its kin.
    """
    ctes = {n.ctename for n in walk(stmt) if isinstance(n, ast.CommonTableExpr) and n.ctename}
    kinds = _relation_kinds(stmt)
    for node in walk(stmt):
        if isinstance(node, ast.RangeVar):
            if node.relpersistence == "t" or not node.relname:
                continue
            if node.schemaname is None and node.relname in ctes:
                continue
            parts = tuple(p for p in (node.catalogname, node.schemaname, node.relname) if p)
            yield NameRef(kinds.get(id(node), "table"), parts, node.location)
        elif isinstance(node, ast.TypeName):
            ref = _type_ref(node)
            if ref is not None:
                yield ref
        elif isinstance(node, ast.FuncCall):
            parts = tuple(strings(node.funcname))
            if len(parts) >= 2 or (
                parts and parts[0] in functions and parts[0] not in BUILTIN_FUNCTIONS
            ):
                yield NameRef("function", parts, node.location)
            if parts and parts[-1] in _SEQUENCE_FUNCTIONS and node.args:
                ref = _sequence_argument(node.args[0], node.location)
                if ref is not None:
                    yield ref
    yield from _statement_names(stmt)


def _sequence_argument(arg: Any, location: int | None) -> NameRef | None:
    """The sequence named by the string in ``nextval('name')`` (resolved via search_path)."""
    if isinstance(arg, ast.TypeCast):
        arg = arg.arg
    if not (isinstance(arg, ast.A_Const) and isinstance(arg.val, ast.String)):
        return None
    text = arg.val.sval or ""
    schema, dot, name = text.rpartition(".")
    if not name:
        return None
    if dot:
        schema = schema.strip('"') if schema.startswith('"') else schema.lower()
        return NameRef("sequence", (schema, name), location, in_string=True)
    return NameRef("sequence", (name,), location, in_string=True)


def _type_ref(node: ast.TypeName) -> NameRef | None:
    if node.pct_type:
        return None
    parts = tuple(strings(node.names))
    if not parts or (len(parts) == 1 and parts[0].lower() in BUILTIN_TYPES):
        return None
    return NameRef("type", parts, node.location)


def _relation_kinds(stmt: ast.Node) -> dict[int, str]:
    """Kinds of the statement's own relation, when it is not a table."""
    node: Any = stmt
    found: dict[int, str] = {}
    if isinstance(node, ast.CreateSeqStmt | ast.AlterSeqStmt) and node.sequence is not None:
        found[id(node.sequence)] = "sequence"
    elif isinstance(node, ast.ViewStmt) and node.view is not None:
        found[id(node.view)] = "view"
    elif isinstance(node, ast.CompositeTypeStmt) and node.typevar is not None:
        found[id(node.typevar)] = "type"
    elif isinstance(node, ast.AlterTableStmt | ast.RenameStmt) and node.relation is not None:
        objtype = node.objtype if isinstance(node, ast.AlterTableStmt) else node.renameType
        if objtype in _RELATION_KINDS and objtype is not ObjectType.OBJECT_TABLE:
            found[id(node.relation)] = _RELATION_KINDS[objtype]
    elif isinstance(node, ast.ReindexStmt) and node.relation is not None:
        index = node.kind is not None and "INDEX" in node.kind.name
        found[id(node.relation)] = "index" if index else "table"
    elif (
        isinstance(node, ast.CreateTableAsStmt)
        and node.into is not None
        and node.into.rel is not None
        and node.objtype is ObjectType.OBJECT_MATVIEW
    ):
        found[id(node.into.rel)] = "materialized view"
    return found


def _statement_names(stmt: ast.Node) -> Iterator[NameRef]:
    """Names the parse tree keeps as plain strings (no location), statement by statement."""
    node: Any = stmt
    if isinstance(node, ast.CreateFunctionStmt):
        kind = "procedure" if node.is_procedure else "function"
        yield NameRef(kind, tuple(strings(node.funcname)), None)
    elif isinstance(node, ast.CreateTrigStmt):
        yield NameRef("trigger function", tuple(strings(node.funcname)), None)
    elif isinstance(node, ast.CreateEnumStmt | ast.CreateRangeStmt | ast.AlterEnumStmt):
        yield NameRef("type", tuple(strings(node.typeName)), None)
    elif isinstance(node, ast.AlterDomainStmt):
        yield NameRef("domain", tuple(strings(node.typeName)), None)
    elif isinstance(node, ast.CreateDomainStmt):
        yield NameRef("domain", tuple(strings(node.domainname)), None)
    elif isinstance(node, ast.DefineStmt) and node.kind is ObjectType.OBJECT_TYPE:
        yield NameRef("type", tuple(strings(node.defnames)), None)
    elif isinstance(node, ast.AlterFunctionStmt) and node.func is not None:
        yield NameRef("function", tuple(strings(node.func.objname)), None)
    elif isinstance(node, ast.DropStmt):
        for obj in node.objects or ():
            ref = _object_name(node.removeType, obj)
            if ref is not None:
                yield ref
    elif isinstance(node, ast.RenameStmt) and node.relation is None:
        ref = _object_name(node.renameType, node.object)
        if ref is not None:
            yield ref
    elif isinstance(node, ast.CommentStmt):
        ref = _object_name(node.objtype, node.object)
        if ref is not None:
            yield ref
    elif isinstance(node, ast.CreateSeqStmt | ast.AlterSeqStmt):
        for option in node.options or ():
            # OWNED BY table.column: the table resolves through search_path too
            if isinstance(option, ast.DefElem) and option.defname == "owned_by":
                parts = strings(option.arg)[:-1]
                if parts:  # OWNED BY NONE has no table
                    yield NameRef("table", tuple(parts), None)


def _object_name(objtype: Any, obj: Any) -> NameRef | None:
    """The name of a dropped / renamed / commented object given as strings (not a node)."""
    if objtype in _RELATION_KINDS and isinstance(obj, tuple):
        return NameRef(_RELATION_KINDS[objtype], tuple(strings(obj)), None)
    if objtype in _ROUTINE_KINDS and isinstance(obj, ast.ObjectWithArgs):
        return NameRef(_ROUTINE_KINDS[objtype], tuple(strings(obj.objname)), None)
    if objtype in _TYPE_KINDS and isinstance(obj, tuple):
        return NameRef(_TYPE_KINDS[objtype], tuple(strings(obj)), None)
    if objtype in _ON_TABLE_KINDS and isinstance(obj, tuple):
        parts = strings(obj)[:-1]
        return NameRef("table", tuple(parts), None) if parts else None
    return None
