"""The facts the walker collects as it goes: what the statements so far created, locked, added.

Every rule reads them; none records them. The walker records a statement's facts (and each
``ALTER TABLE`` subcommand's) only after every rule has seen it, so a rule always sees the
migration as it stood before the statement at hand: ``ALTER COLUMN TYPE`` compares with the
type the column had, ``VALIDATE CONSTRAINT`` sees whether an earlier statement added it.
The one exception is the lock an ``ALTER TABLE`` takes, recorded before its subcommands (it
is taken before any of them runs).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from pglast import ast
from pglast.enums import AlterTableType, ConstrType, NullTestType, ObjectType

from ._common import Statement, dotted, name_key, strings, table_key
from ._names import SERIAL_TYPES
from ._state import Check, State, column_type

SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, ACCESS_EXCLUSIVE = 4, 5, 6, 8
LOCK_NAMES = {
    4: "SHARE UPDATE EXCLUSIVE",
    5: "SHARE",
    6: "SHARE ROW EXCLUSIVE",
    7: "EXCLUSIVE",
    8: "ACCESS EXCLUSIVE",
}
_AT = AlterTableType
_SUE_SUBCOMMANDS = frozenset(
    {
        _AT.AT_SetStatistics,
        _AT.AT_SetOptions,
        _AT.AT_ResetOptions,
        _AT.AT_ValidateConstraint,
        _AT.AT_ClusterOn,
        _AT.AT_DropCluster,
        _AT.AT_SetRelOptions,
        _AT.AT_ResetRelOptions,
        _AT.AT_AttachPartition,
    }
)
_SRE_SUBCOMMANDS = frozenset(
    {
        _AT.AT_EnableTrig,
        _AT.AT_EnableAlwaysTrig,
        _AT.AT_EnableReplicaTrig,
        _AT.AT_DisableTrig,
        _AT.AT_EnableTrigAll,
        _AT.AT_DisableTrigAll,
        _AT.AT_EnableTrigUser,
        _AT.AT_DisableTrigUser,
    }
)
NOT_DDL = frozenset(
    {
        "SelectStmt",
        "InsertStmt",
        "UpdateStmt",
        "DeleteStmt",
        "MergeStmt",
        "VariableSetStmt",
        "VariableShowStmt",
        "TransactionStmt",
        "DoStmt",
        "CallStmt",
        "ExplainStmt",
        "CopyStmt",
        "NotifyStmt",
    }
)
"""Statements that change no schema: a migration of only these is no DDL migration."""
RENAMED_RELATIONS = {
    ObjectType.OBJECT_TABLE: "table",
    ObjectType.OBJECT_VIEW: "view",
    ObjectType.OBJECT_MATVIEW: "materialized view",
    ObjectType.OBJECT_FOREIGN_TABLE: "foreign table",
}
"""The relations ``ALTER ... RENAME TO`` renames, by the word messages use."""
_WRITES = {"UpdateStmt": "UPDATE", "DeleteStmt": "DELETE", "MergeStmt": "MERGE"}
_ROUTINES = frozenset(
    {
        ObjectType.OBJECT_FUNCTION,
        ObjectType.OBJECT_PROCEDURE,
        ObjectType.OBJECT_ROUTINE,
        ObjectType.OBJECT_AGGREGATE,
    }
)
_NOT_NULL_CONSTRAINTS = frozenset(
    {ConstrType.CONSTR_NOTNULL, ConstrType.CONSTR_PRIMARY, ConstrType.CONSTR_IDENTITY}
)


class Lock(NamedTuple):
    """The first write-blocking lock this migration took on a table."""

    mode: int
    what: str
    """The statement that took it, for messages."""
    offset: int


class Write(NamedTuple):
    """An UPDATE, DELETE or MERGE of a table this migration did not create."""

    statement: int
    offset: int
    verb: str
    table: str


class Command(NamedTuple):
    """One subcommand of an ``ALTER TABLE``, with the table it alters."""

    table: str
    new: bool
    """The table was created by this migration (it is empty: most rules do not apply)."""
    node: ast.AlterTableCmd


class Facts:
    """What earlier migrations (:attr:`state`) and this one's statements so far established."""

    def __init__(self, state: State, transactional: bool) -> None:
        self.state = state
        """Carried to the next migration; changed in place."""
        self.transactional = transactional
        self.created: set[str] = set()
        """Tables (and views) this migration created."""
        self.created_indexes: set[str] = set()
        self.not_valid_here: dict[tuple[str, str], int] = {}
        """(table, constraint) added NOT VALID by this migration -> where."""
        self.checks_here: set[tuple[str, str]] = set()
        """CHECK constraints this migration added."""
        self.locks: dict[str, Lock] = {}
        """Table -> the first lock of SHARE or stronger taken on it in this migration."""
        self.enum_added: dict[str, tuple[str, int]] = {}
        """Enum value added in this transaction -> (its type, where)."""
        self.has_ddl = False
        self.writes: list[Write] = []

    def lock(self, table: str, mode: int, what: str, offset: int) -> None:
        """Remember that *what* at *offset* took *mode* on *table*, unless one came first."""
        if table and mode >= SHARE and table not in self.locks:
            self.locks[table] = Lock(mode, what, offset)

    def alter_table(self, node: ast.AlterTableStmt, offset: int) -> list[Command]:
        """Record the lock an ``ALTER TABLE`` takes; its subcommands, for the rules."""
        table = table_key(node.relation)
        new = table in self.created
        commands = [c for c in node.cmds or () if isinstance(c, ast.AlterTableCmd)]
        mode = max((command_lock(c) for c in commands), default=0)
        self.lock(table, mode, "ALTER TABLE", offset)
        return [Command(table, new, c) for c in commands]

    def after_command(self, command: Command, offset: int) -> None:
        """Record what one ``ALTER TABLE`` subcommand established."""
        table, node = command.table, command.node
        subtype, definition = node.subtype, node.def_
        if subtype is _AT.AT_AddColumn and isinstance(definition, ast.ColumnDef):
            self.remember_column(table, definition)
            if not command.new:
                for constraint in definition.constraints or ():
                    if (
                        isinstance(constraint, ast.Constraint)
                        and constraint.contype is ConstrType.CONSTR_FOREIGN
                    ):
                        referenced = table_key(constraint.pktable)
                        self.lock(referenced, SHARE_ROW_EXCLUSIVE, "REFERENCES", offset)
        elif subtype is _AT.AT_AddConstraint and isinstance(definition, ast.Constraint):
            if definition.contype is ConstrType.CONSTR_PRIMARY:
                self.remember_primary_key(table, definition)
            if definition.contype in (ConstrType.CONSTR_CHECK, ConstrType.CONSTR_FOREIGN):
                if definition.skip_validation:
                    self.not_valid_here[(table, definition.conname or "")] = offset
                self.remember_check(table, definition)
                if definition.contype is ConstrType.CONSTR_FOREIGN:
                    referenced = table_key(definition.pktable)
                    self.lock(referenced, SHARE_ROW_EXCLUSIVE, "ADD FOREIGN KEY", offset)
        elif subtype is _AT.AT_ValidateConstraint and node.name:
            key = (table, node.name)
            if key in self.state.checks:
                self.state.checks[key] = replace(self.state.checks[key], validated=True)
        elif subtype is _AT.AT_DropConstraint and node.name:
            self.state.checks.pop((table, node.name), None)
        elif subtype is _AT.AT_AlterColumnType and isinstance(definition, ast.ColumnDef):
            target = column_type(definition.typeName)
            if target is not None:
                self.state.columns[(table, node.name or "")] = target
        elif subtype is _AT.AT_DropColumn and node.name:
            self.state.drop_column(table, node.name)
        elif subtype is _AT.AT_SetNotNull and node.name:
            self.state.not_null.add((table, node.name))
        elif subtype is _AT.AT_DropNotNull and node.name:
            self.state.not_null.discard((table, node.name))

    def after_statement(self, statement: Statement) -> None:
        """Record what *statement* established, once every rule has seen it."""
        node: Any = statement.node
        name = type(node).__name__
        if name not in NOT_DDL:
            self.has_ddl = True
        if name in _WRITES:
            table = table_key(node.relation)
            if table and table not in self.created:
                self.writes.append(Write(statement.index, statement.start, _WRITES[name], table))
            return
        record = getattr(self, "_after_" + name, None)
        if record is not None:
            record(node, statement.start)

    def remember_column(self, table: str, column: ast.ColumnDef) -> None:
        ctype = column_type(column.typeName)
        name = column.colname or ""
        if ctype is not None and name:
            self.state.columns[(table, name)] = ctype
        type_name = strings(column.typeName.names) if column.typeName else []
        serial = len(type_name) == 1 and type_name[0].lower() in SERIAL_TYPES
        if serial and "." not in table:
            self.state.sequences.add(f"{table}_{name}_seq")
        not_null = serial
        for constraint in column.constraints or ():
            if isinstance(constraint, ast.Constraint):
                self.remember_check(table, constraint)
                if constraint.contype in _NOT_NULL_CONSTRAINTS:
                    not_null = True
                elif constraint.contype is ConstrType.CONSTR_NULL:
                    not_null = False
        if not_null and name:
            self.state.not_null.add((table, name))

    def remember_primary_key(self, table: str, constraint: ast.Constraint) -> None:
        for key in constraint.keys or ():
            if isinstance(key, ast.String) and key.sval:
                self.state.not_null.add((table, key.sval))

    def remember_check(self, table: str, constraint: ast.Constraint) -> None:
        if constraint.contype is ConstrType.CONSTR_CHECK and constraint.conname:
            key = (table, constraint.conname)
            column = _not_null_column(constraint.raw_expr)
            self.state.checks[key] = Check(column, not constraint.skip_validation)
            self.checks_here.add(key)

    # --- one method per statement type that establishes something -------------------------

    def _after_CreateStmt(self, node: ast.CreateStmt, offset: int) -> None:
        table = table_key(node.relation)
        self.created.add(table)
        self.state.drop_table(table)
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef) and element.colname:
                self.remember_column(table, element)
            elif isinstance(element, ast.Constraint):
                self.remember_check(table, element)
                if element.contype is ConstrType.CONSTR_PRIMARY:
                    self.remember_primary_key(table, element)

    def _after_CreateTableAsStmt(self, node: ast.CreateTableAsStmt, offset: int) -> None:
        if node.into is not None:
            self.created.add(table_key(node.into.rel))

    def _after_CreateEnumStmt(self, node: ast.CreateEnumStmt, offset: int) -> None:
        self.state.enums.add(name_key(strings(node.typeName)))
        self.state.types.add(name_key(strings(node.typeName)))

    def _after_CreateDomainStmt(self, node: ast.CreateDomainStmt, offset: int) -> None:
        self.state.types.add(name_key(strings(node.domainname)))

    def _after_CreateRangeStmt(self, node: ast.CreateRangeStmt, offset: int) -> None:
        self.state.types.add(name_key(strings(node.typeName)))

    def _after_CompositeTypeStmt(self, node: ast.CompositeTypeStmt, offset: int) -> None:
        self.state.types.add(table_key(node.typevar))

    def _after_DefineStmt(self, node: ast.DefineStmt, offset: int) -> None:
        if node.kind is ObjectType.OBJECT_TYPE:
            self.state.types.add(name_key(strings(node.defnames)))
        elif node.kind is ObjectType.OBJECT_AGGREGATE:
            self.state.functions.add(name_key(strings(node.defnames)))

    def _after_CreateSeqStmt(self, node: ast.CreateSeqStmt, offset: int) -> None:
        self.state.sequences.add(table_key(node.sequence))

    def _after_AlterEnumStmt(self, node: ast.AlterEnumStmt, offset: int) -> None:
        if node.oldVal is None and node.newVal is not None and self.transactional:
            self.enum_added[node.newVal] = (dotted(strings(node.typeName)), offset)

    def _after_CreateFunctionStmt(self, node: ast.CreateFunctionStmt, offset: int) -> None:
        name = name_key(strings(node.funcname))
        volatility = [
            o.arg.sval
            for o in node.options or ()
            if isinstance(o, ast.DefElem) and o.defname == "volatility"
            and isinstance(o.arg, ast.String)
        ]
        self.state.functions.add(name)
        if volatility and volatility[-1] in ("immutable", "stable"):
            self.state.stable_functions = self.state.stable_functions | {name}
        else:  # VOLATILE unless declared otherwise (CREATE OR REPLACE may make it so)
            self.state.stable_functions = self.state.stable_functions - {name}

    def _after_DropStmt(self, node: ast.DropStmt, offset: int) -> None:
        objects = node.objects or ()
        if node.removeType is ObjectType.OBJECT_INDEX:
            for obj in objects:
                index = name_key(strings(obj))
                table = self.state.indexes.pop(index, "")
                if not node.concurrent and index not in self.created_indexes:
                    self.lock(table, ACCESS_EXCLUSIVE, "DROP INDEX", offset)
        elif node.removeType is ObjectType.OBJECT_TABLE:
            for obj in objects:
                table = name_key(strings(obj))
                if table not in self.created:
                    self.lock(table, ACCESS_EXCLUSIVE, "DROP TABLE", offset)
                self.created.discard(table)
                self.state.drop_table(table)
        elif node.removeType is ObjectType.OBJECT_TRIGGER:
            for obj in objects:
                self.lock(name_key(strings(obj)[:-1]), ACCESS_EXCLUSIVE, "DROP TRIGGER", offset)
        elif node.removeType is ObjectType.OBJECT_TYPE:
            for obj in objects:
                if isinstance(obj, ast.TypeName):
                    self.state.enums.discard(name_key(strings(obj.names)))

    def _after_RenameStmt(self, node: ast.RenameStmt, offset: int) -> None:
        table = table_key(node.relation)
        if node.renameType is ObjectType.OBJECT_COLUMN and node.subname and node.newname:
            self.lock(table, ACCESS_EXCLUSIVE, "RENAME COLUMN", offset)
            self.state.rename_column(table, node.subname, node.newname)
        elif node.renameType in RENAMED_RELATIONS and node.newname and node.relation:
            self.lock(table, ACCESS_EXCLUSIVE, "RENAME", offset)
            new = name_key([node.relation.schemaname or "", node.newname])
            if table in self.created:
                self.created.add(new)
            self.state.rename_table(table, new)
        elif (
            node.renameType is ObjectType.OBJECT_INDEX
            and node.newname
            and table in self.state.indexes
        ):
            self.state.indexes[node.newname] = self.state.indexes.pop(table)
        elif node.newname:
            self._renamed_object(node, node.newname)

    def _renamed_object(self, node: ast.RenameStmt, new: str) -> None:
        """A sequence, type or function renamed: calls of its new name are its calls."""
        kind = node.renameType
        if kind is ObjectType.OBJECT_SEQUENCE and node.relation is not None:
            self.state.sequences.add(name_key([node.relation.schemaname or "", new]))
        elif kind in (ObjectType.OBJECT_TYPE, ObjectType.OBJECT_DOMAIN):
            self.state.types.add(name_key([*strings(node.object)[:-1], new]))
        elif kind in _ROUTINES and isinstance(node.object, ast.ObjectWithArgs):
            self.state.functions.add(name_key([*strings(node.object.objname)[:-1], new]))

    def _after_IndexStmt(self, node: ast.IndexStmt, offset: int) -> None:
        table = table_key(node.relation)
        if not node.concurrent and table not in self.created:
            self.lock(table, SHARE, "CREATE INDEX", offset)
        if node.idxname:
            self.state.indexes[node.idxname] = table
            self.created_indexes.add(node.idxname)

    def _after_CreateTrigStmt(self, node: ast.CreateTrigStmt, offset: int) -> None:
        self.lock(table_key(node.relation), SHARE_ROW_EXCLUSIVE, "CREATE TRIGGER", offset)

    def _after_LockStmt(self, node: ast.LockStmt, offset: int) -> None:
        for relation in node.relations or ():
            if isinstance(relation, ast.RangeVar):
                mode = node.mode or ACCESS_EXCLUSIVE
                self.lock(table_key(relation), mode, "LOCK TABLE", offset)

    def _after_TruncateStmt(self, node: ast.TruncateStmt, offset: int) -> None:
        for relation in node.relations or ():
            if isinstance(relation, ast.RangeVar):
                self.lock(table_key(relation), ACCESS_EXCLUSIVE, "TRUNCATE", offset)


def command_lock(command: ast.AlterTableCmd) -> int:
    """The lock mode one ``ALTER TABLE`` subcommand takes on its table."""
    subtype, definition = command.subtype, command.def_
    if subtype in _SUE_SUBCOMMANDS:
        return SHARE_UPDATE_EXCLUSIVE
    if subtype in _SRE_SUBCOMMANDS:
        return SHARE_ROW_EXCLUSIVE
    if (
        subtype is _AT.AT_AddConstraint
        and isinstance(definition, ast.Constraint)
        and definition.contype is ConstrType.CONSTR_FOREIGN
    ):
        return SHARE_ROW_EXCLUSIVE
    if (
        subtype is _AT.AT_DetachPartition
        and isinstance(definition, ast.PartitionCmd)
        and definition.concurrent
    ):
        return SHARE_UPDATE_EXCLUSIVE
    return ACCESS_EXCLUSIVE


def _not_null_column(expr: Any) -> str | None:
    """``col`` when *expr* is ``col IS NOT NULL``."""
    if isinstance(expr, ast.NullTest) and expr.nulltesttype is NullTestType.IS_NOT_NULL:
        parts = strings(expr.arg.fields) if isinstance(expr.arg, ast.ColumnRef) else []
        if len(parts) == 1:
            return parts[0]
    return None
