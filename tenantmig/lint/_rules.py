"""The rules: one pass over a migration's statements, in order, with the facts they establish."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from pglast import ast
from pglast.enums import (
    AlterTableType,
    ConstrType,
    NullTestType,
    ObjectType,
    TableLikeOption,
    TransactionStmtKind,
)

from .._sql import quote_ident
from ..source import Allow, walk
from ._allows import Raw, apply_allows, parse_allows
from ._common import (
    CATALOG_SCHEMAS,
    ERROR,
    SENTINEL_NAME,
    WARNING,
    Finding,
    S,
    Statement,
    Text,
    dotted,
    name_key,
    shown,
    strings,
    table_key,
)
from ._names import SERIAL_TYPES, references
from ._state import Check, LintState, coercion, column_type

SHARE_UPDATE_EXCLUSIVE, SHARE, SHARE_ROW_EXCLUSIVE, ACCESS_EXCLUSIVE = 4, 5, 6, 8
_LOCK_NAMES = {
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
_NOT_DDL = frozenset(
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
_RENAMED_RELATIONS = {
    ObjectType.OBJECT_TABLE: "table",
    ObjectType.OBJECT_VIEW: "view",
    ObjectType.OBJECT_MATVIEW: "materialized view",
    ObjectType.OBJECT_FOREIGN_TABLE: "foreign table",
}
_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_$]*")
_NO_TX = "`-- tenantmig:no-transaction`"
_SWAP = (
    "use the 5-step swap: add a new column, keep it in sync (trigger), backfill in batches "
    "(Python migration, ctx.backfill), switch reads, drop the old column in a later release"
)
_EXPAND_CONTRACT = (
    "expand/contract across releases; allow it with a reason once no deployed code uses it"
)


def _ident(name: str) -> str:
    return name if _PLAIN_IDENT.fullmatch(name) else quote_ident(name)


def run(
    template: str,
    path: str,
    transactional: bool,
    earlier: LintState | None,
    shared_schemas: Sequence[str],
    allows: Sequence[Allow] | None,
) -> tuple[list[Finding], LintState]:
    """Lint one SQL file; return its findings and the state after it."""
    source = Text(template)
    linter = _Linter(source, transactional, (earlier or LintState()).copy(), shared_schemas)
    linter.lint()
    if allows is None:
        allows = parse_allows(template)
    return apply_allows(source, path, linter.raw, allows), linter.state


class _Linter:
    def __init__(
        self, source: Text, transactional: bool, state: LintState, shared: Sequence[str]
    ) -> None:
        self.src = source
        self.transactional = transactional
        self.state = state
        self.shared = tuple(shared)
        self.allowed_schemas = CATALOG_SCHEMAS | {SENTINEL_NAME} | set(shared)
        self.raw: list[Raw] = []
        self.stmt: Statement | None = None
        # facts about this migration only
        self.created: set[str] = set()
        self.created_indexes: set[str] = set()
        self.not_valid_here: dict[tuple[str, str], int] = {}
        self.checks_here: set[tuple[str, str]] = set()
        self.locks: dict[str, tuple[int, str, int]] = {}
        self.enum_added: dict[str, tuple[str, int]] = {}
        self.has_ddl = False
        self.dml: list[tuple[int, int, str, str]] = []

    # --- plumbing -----------------------------------------------------------------------

    def lint(self) -> None:
        for broken in self.src.broken:
            self.raw.append(
                (
                    broken.index,
                    broken.offset,
                    "unparsable",
                    f"PostgreSQL cannot parse this statement: {broken.message} — fix the "
                    "syntax (the server would reject it for every tenant)",
                    ERROR,
                )
            )
        for statement in self.src.statements:
            self.stmt = statement
            node = statement.node
            self._enum_values_used(node)
            self._set_config(node)
            handler = getattr(self, "_" + type(node).__name__, None)
            if handler is not None:
                handler(node)
            if type(node).__name__ not in _NOT_DDL:
                self.has_ddl = True
            self._names(node)
        if self.has_ddl:
            for index, offset, verb, table in self.dml:
                self.raw.append(
                    (
                        index,
                        offset,
                        "unbatched-dml",
                        f"{verb} of {shown(table)} in a migration that also changes the "
                        "schema: every row it touches stays locked, and so do the DDL locks, "
                        "until the migration commits — backfill in a separate Python migration "
                        "with ctx.backfill (keyset batches, each committed on its own)",
                        ERROR,
                    )
                )

    def report(
        self, rule: str, message: str, at: int | None = None, severity: str = ERROR
    ) -> None:
        assert self.stmt is not None
        offset = at if at is not None and at >= 0 else self.stmt.start
        self.raw.append((self.stmt.index, offset, rule, message, severity))

    @property
    def start(self) -> int:
        assert self.stmt is not None
        return self.stmt.start

    def _lock(self, table: str, mode: int, what: str) -> None:
        if table and mode >= SHARE and table not in self.locks:
            self.locks[table] = (mode, what, self.start)

    def _concurrently(self, what: str) -> None:
        if self.transactional:
            self.report(
                "concurrently-in-transaction",
                f"{what} CONCURRENTLY cannot run inside a transaction block (25001) and this "
                f"migration is transactional — put it alone in a migration with the {_NO_TX} "
                "header",
            )

    # --- names --------------------------------------------------------------------------

    def _names(self, node: ast.Node) -> None:
        for ref in references(node):
            name = _ident(ref.name)
            if ref.schema is None:
                hint = f"write {S}.{name}"
                if self.shared:
                    hint += f" (or {_ident(self.shared[0])}.{name} for a shared object)"
                self.report(
                    "unqualified-name",
                    f"{ref.kind} {name} is not schema-qualified, so it resolves through "
                    f"search_path (public, or whatever the session has), not this tenant's "
                    f"schema — {hint}",
                    ref.location,
                )
            elif ref.schema not in self.allowed_schemas:
                what = (
                    "another tenant's schema"
                    if ref.schema.startswith("tenant_")
                    else "a schema that is neither {{schema}} nor a shared schema"
                )
                self.report(
                    "other-tenant-schema",
                    f"{ref.kind} {dotted(list(ref.parts))} is in {what}: a migration runs once "
                    f"per tenant and must only touch that tenant — write {S}.{name} (declare "
                    "truly shared schemas with shared_schemas)",
                    ref.location,
                )

    # --- enums --------------------------------------------------------------------------

    def _enum_values_used(self, node: ast.Node) -> None:
        if not self.enum_added:
            return
        for item in walk(node):
            if isinstance(item, ast.A_Const) and isinstance(item.val, ast.String):
                value = item.val.sval
                if value in self.enum_added:
                    type_name, offset = self.enum_added[value]
                    self.report(
                        "enum-value-used-same-migration",
                        f"'{value}' was added to {type_name} by ALTER TYPE ... ADD VALUE at "
                        f"line {self.src.line(offset)} of this same transaction, and PostgreSQL "
                        "refuses to use it before commit (55P04) — use the new value in a later "
                        "migration",
                        self._literal_offset(value),
                    )

    def _set_config(self, node: ast.Node) -> None:
        for item in walk(node):
            if (
                isinstance(item, ast.FuncCall)
                and strings(item.funcname)[-1:] == ["set_config"]
                and item.args
                and _string_constant(item.args[0]).lower() == "search_path"
            ):
                self._search_path(item.location)

    def _literal_offset(self, value: str) -> int | None:
        """Where the string constant *value* first appears in the current statement."""
        assert self.stmt is not None
        found = self.src.text.find("'" + value.replace("'", "''") + "'", self.stmt.start)
        return found if 0 <= found < self.stmt.end else None

    def _AlterEnumStmt(self, node: ast.AlterEnumStmt) -> None:
        if node.oldVal is not None or node.newVal is None:
            return
        type_name = dotted(strings(node.typeName))
        if not node.skipIfNewValExists:
            self.report(
                "enum-value-without-if-not-exists",
                f"ADD VALUE '{node.newVal}' to {type_name} without IF NOT EXISTS fails on a "
                "retry once the value exists (enum values cannot be dropped) — write ADD VALUE "
                "IF NOT EXISTS",
                severity=WARNING,
            )
        if self.transactional:
            self.enum_added[node.newVal] = (type_name, self.start)

    def _CreateEnumStmt(self, node: ast.CreateEnumStmt) -> None:
        self.state.enums.add(name_key(strings(node.typeName)))

    # --- tables -------------------------------------------------------------------------

    def _CreateStmt(self, node: ast.CreateStmt) -> None:
        table = table_key(node.relation)
        self.created.add(table)
        self.state.drop_table(table)
        for element in node.tableElts or ():
            if isinstance(element, ast.ColumnDef) and element.colname:
                self._remember_column(table, element)
            elif isinstance(element, ast.Constraint):
                self._remember_check(table, element)
            elif isinstance(element, ast.TableLikeClause):
                self._like(element, partitioned=node.partspec is not None)

    def _like(self, like: ast.TableLikeClause, *, partitioned: bool) -> None:
        options = like.options or 0
        source = shown(table_key(like.relation))
        if partitioned and options & TableLikeOption.CREATE_TABLE_LIKE_INDEXES:
            self.report(
                "partition-like-indexes",
                f"LIKE {source} INCLUDING ALL/INDEXES copies its primary key and unique indexes, "
                "but on a partitioned table they must include the partition key, so this fails "
                f"— use LIKE {source} INCLUDING ALL EXCLUDING INDEXES and declare e.g. PRIMARY "
                "KEY (id, created_at); foreign keys to the old key must change too",
                like.relation.location if like.relation else None,
            )
        if options & TableLikeOption.CREATE_TABLE_LIKE_DEFAULTS:
            self.report(
                "like-copies-defaults",
                f"LIKE {source} INCLUDING ALL/DEFAULTS copies nextval() defaults that keep using "
                f"{source}'s sequence, tying the new table to it — exclude defaults (EXCLUDING "
                "DEFAULTS) and give the new table its own identity column or sequence",
                like.relation.location if like.relation else None,
                WARNING,
            )

    def _CreateTableAsStmt(self, node: ast.CreateTableAsStmt) -> None:
        if node.into is not None:
            self.created.add(table_key(node.into.rel))

    def _remember_column(self, table: str, column: ast.ColumnDef) -> None:
        ctype = column_type(column.typeName)
        if ctype is not None and column.colname:
            self.state.columns[(table, column.colname)] = ctype
        for constraint in column.constraints or ():
            if isinstance(constraint, ast.Constraint):
                self._remember_check(table, constraint)

    def _remember_check(self, table: str, constraint: ast.Constraint) -> None:
        if constraint.contype is ConstrType.CONSTR_CHECK and constraint.conname:
            key = (table, constraint.conname)
            column = _not_null_column(constraint.raw_expr)
            self.state.checks[key] = Check(column, not constraint.skip_validation)
            self.checks_here.add(key)

    def _DropStmt(self, node: ast.DropStmt) -> None:
        objects = node.objects or ()
        if node.removeType is ObjectType.OBJECT_INDEX:
            if node.concurrent:
                self._concurrently("DROP INDEX")
                if not self.transactional and not node.missing_ok:
                    self.report(
                        "concurrently-not-retryable",
                        "DROP INDEX CONCURRENTLY without IF EXISTS fails (42704) on the retry "
                        "that follows a drop which finished after its runner was killed — "
                        "write DROP INDEX CONCURRENTLY IF EXISTS",
                        severity=WARNING,
                    )
            for obj in objects:
                index = name_key(strings(obj))
                table = self.state.indexes.pop(index, "")
                if not node.concurrent and index not in self.created_indexes:
                    self._lock(table, ACCESS_EXCLUSIVE, "DROP INDEX")
                    self.report(
                        "drop-index-not-concurrent",
                        f"DROP INDEX {dotted(strings(obj))} without CONCURRENTLY takes ACCESS "
                        "EXCLUSIVE on its table, queueing every read and write behind it — use "
                        f"DROP INDEX CONCURRENTLY IF EXISTS, alone in a {_NO_TX} migration",
                    )
        elif node.removeType is ObjectType.OBJECT_TABLE:
            for obj in objects:
                table = name_key(strings(obj))
                if table not in self.created:
                    self._lock(table, ACCESS_EXCLUSIVE, "DROP TABLE")
                    self.report(
                        "drop-table",
                        f"DROP TABLE {shown(table)} breaks running code that still uses it and "
                        f"deletes its data — stop using it in an earlier release first; "
                        f"{_EXPAND_CONTRACT}",
                    )
                self.created.discard(table)
                self.state.drop_table(table)
        elif node.removeType is ObjectType.OBJECT_TRIGGER:
            for obj in objects:
                self._lock(name_key(strings(obj)[:-1]), ACCESS_EXCLUSIVE, "DROP TRIGGER")
        elif node.removeType is ObjectType.OBJECT_TYPE:
            for obj in objects:
                if isinstance(obj, ast.TypeName):
                    self.state.enums.discard(name_key(strings(obj.names)))

    def _RenameStmt(self, node: ast.RenameStmt) -> None:
        table = table_key(node.relation)
        if node.renameType is ObjectType.OBJECT_COLUMN and node.subname and node.newname:
            self._lock(table, ACCESS_EXCLUSIVE, "RENAME COLUMN")
            if table not in self.created:
                old, new = _ident(node.subname), _ident(node.newname)
                self.report(
                    "rename-column",
                    f"RENAME COLUMN {old} TO {new} on {shown(table)} breaks running code that "
                    f"still uses {old} — add {new}, keep both in sync, switch readers, drop "
                    f"{old} later; {_EXPAND_CONTRACT}",
                )
            self.state.rename_column(table, node.subname, node.newname)
        elif node.renameType in _RENAMED_RELATIONS and node.newname and node.relation:
            self._lock(table, ACCESS_EXCLUSIVE, "RENAME")
            parts = [node.relation.schemaname or "", node.newname]
            new = name_key(parts)
            if table not in self.created:
                kind = _RENAMED_RELATIONS[node.renameType]
                self.report(
                    "rename-table",
                    f"renaming {kind} {shown(table)} to {_ident(node.newname)} breaks running "
                    "code that still uses the old name — create the new one (or a view under "
                    f"the old name) and move readers and writers over; {_EXPAND_CONTRACT}",
                )
            else:
                self.created.add(new)
            self.state.rename_table(table, new)
        elif node.renameType is ObjectType.OBJECT_INDEX and node.newname:
            old_index = table_key(node.relation)
            if old_index in self.state.indexes:
                self.state.indexes[node.newname] = self.state.indexes.pop(old_index)

    def _IndexStmt(self, node: ast.IndexStmt) -> None:
        table = table_key(node.relation)
        if node.concurrent:
            self._concurrently("CREATE INDEX")
            self._retryable_index(node)
        elif table not in self.created:
            self._lock(table, SHARE, "CREATE INDEX")
            self.report(
                "index-not-concurrent",
                f"CREATE INDEX on existing table {shown(table)} without CONCURRENTLY blocks "
                "every write to it (SHARE lock) for the whole build — use CREATE INDEX "
                f"CONCURRENTLY, alone in a {_NO_TX} migration",
            )
        if node.idxname:
            self.state.indexes[node.idxname] = table
            self.created_indexes.add(node.idxname)

    def _retryable_index(self, node: ast.IndexStmt) -> None:
        """A no-transaction CREATE INDEX CONCURRENTLY is not rolled back: if its runner is
        killed mid-build, the server finishes the build, and the retry must cope."""
        if self.transactional:
            return
        if not node.idxname:
            self.report(
                "concurrently-not-retryable",
                "CREATE INDEX CONCURRENTLY without a name gets a new name on every attempt, so "
                "a retry after an interrupted build adds a second index (or an INVALID one "
                "that slows every write) — name the index and add IF NOT EXISTS",
                severity=WARNING,
            )
        elif not node.if_not_exists:
            self.report(
                "concurrently-not-retryable",
                f"CREATE INDEX CONCURRENTLY {_ident(node.idxname)} without IF NOT EXISTS fails "
                "(42P07) on every retry once a build that outlived its killed runner has "
                "finished — write CREATE INDEX CONCURRENTLY IF NOT EXISTS (tenantmig drops an "
                "INVALID leftover of the same name before a retry)",
                severity=WARNING,
            )

    def _ReindexStmt(self, node: ast.ReindexStmt) -> None:
        params = node.params or ()
        if any(isinstance(p, ast.DefElem) and p.defname == "concurrently" for p in params):
            self._concurrently("REINDEX")

    def _CreateTrigStmt(self, node: ast.CreateTrigStmt) -> None:
        self._lock(table_key(node.relation), SHARE_ROW_EXCLUSIVE, "CREATE TRIGGER")

    def _LockStmt(self, node: ast.LockStmt) -> None:
        for relation in node.relations or ():
            if isinstance(relation, ast.RangeVar):
                self._lock(table_key(relation), node.mode or ACCESS_EXCLUSIVE, "LOCK TABLE")

    def _TruncateStmt(self, node: ast.TruncateStmt) -> None:
        for relation in node.relations or ():
            if isinstance(relation, ast.RangeVar):
                self._lock(table_key(relation), ACCESS_EXCLUSIVE, "TRUNCATE")

    # --- ALTER TABLE --------------------------------------------------------------------

    def _AlterTableStmt(self, node: ast.AlterTableStmt) -> None:
        if node.objtype is not ObjectType.OBJECT_TABLE:
            return
        table = table_key(node.relation)
        new = table in self.created
        commands = [c for c in node.cmds or () if isinstance(c, ast.AlterTableCmd)]
        mode = max((_command_lock(c) for c in commands), default=0)
        self._lock(table, mode, "ALTER TABLE")
        for command in commands:
            subtype, definition = command.subtype, command.def_
            if subtype is _AT.AT_AddColumn and isinstance(definition, ast.ColumnDef):
                self._add_column(table, new, definition)
            elif subtype is _AT.AT_AddConstraint and isinstance(definition, ast.Constraint):
                self._add_constraint(table, new, definition)
            elif subtype is _AT.AT_ValidateConstraint and command.name:
                self._validate(table, command.name)
            elif subtype is _AT.AT_DropConstraint and command.name:
                self.state.checks.pop((table, command.name), None)
            elif subtype is _AT.AT_SetNotNull and command.name and not new:
                self._set_not_null(table, command.name)
            elif subtype is _AT.AT_AlterColumnType and isinstance(definition, ast.ColumnDef):
                self._alter_type(table, new, command.name or "", definition)
            elif subtype is _AT.AT_DropColumn and command.name:
                if not new:
                    self.report(
                        "drop-column",
                        f"DROP COLUMN {_ident(command.name)} of {shown(table)} breaks running "
                        "code that still reads or writes it, and its data is gone — stop using "
                        f"it in an earlier release first; {_EXPAND_CONTRACT}",
                    )
                self.state.drop_column(table, command.name)
            elif (
                subtype is _AT.AT_DetachPartition
                and isinstance(definition, ast.PartitionCmd)
                and definition.concurrent
            ):
                self._concurrently("DETACH PARTITION")

    def _add_column(self, table: str, new: bool, column: ast.ColumnDef) -> None:
        self._remember_column(table, column)
        if new:
            return
        name = _ident(column.colname or "")
        at = column.location
        constraints = [c for c in column.constraints or () if isinstance(c, ast.Constraint)]
        kinds = {c.contype for c in constraints}
        rewrite = _rewrite_reason(column, constraints)
        if rewrite:
            self.report(
                "add-column-volatile-default",
                f"ADD COLUMN {name} with {rewrite} rewrites every row of {shown(table)} under "
                "ACCESS EXCLUSIVE — add it nullable without that default, SET DEFAULT for new "
                "rows, and backfill existing rows in batches (Python migration, ctx.backfill)",
                at,
            )
        elif (column.is_not_null or ConstrType.CONSTR_NOTNULL in kinds) and not (
            kinds & {ConstrType.CONSTR_DEFAULT, ConstrType.CONSTR_IDENTITY}
        ):
            self.report(
                "add-column-not-null-no-default",
                f"ADD COLUMN {name} NOT NULL without DEFAULT on existing table {shown(table)} "
                "fails as soon as it has a row (23502) — add it nullable (or with a constant "
                "DEFAULT), backfill, then SET NOT NULL through a CHECK validated in a later "
                "migration",
                at,
            )
        for constraint in constraints:
            if constraint.contype in (ConstrType.CONSTR_CHECK, ConstrType.CONSTR_FOREIGN):
                kind = "CHECK" if constraint.contype is ConstrType.CONSTR_CHECK else "REFERENCES"
                self.report(
                    "constraint-not-valid",
                    f"ADD COLUMN {name} with an inline {kind} constraint checks every row of "
                    f"{shown(table)} under ACCESS EXCLUSIVE — add the column plain, then ADD "
                    "CONSTRAINT ... NOT VALID, and VALIDATE CONSTRAINT in a later migration",
                    constraint.location,
                )
                if constraint.contype is ConstrType.CONSTR_FOREIGN:
                    self._lock(table_key(constraint.pktable), SHARE_ROW_EXCLUSIVE, "REFERENCES")
            elif constraint.contype in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY):
                self._unique_without_index(table, constraint)

    def _add_constraint(self, table: str, new: bool, constraint: ast.Constraint) -> None:
        kind = constraint.contype
        name = constraint.conname or ""
        if kind in (ConstrType.CONSTR_CHECK, ConstrType.CONSTR_FOREIGN):
            word = "CHECK" if kind is ConstrType.CONSTR_CHECK else "FOREIGN KEY"
            if constraint.skip_validation:
                self.not_valid_here[(table, name)] = self.start
            elif not new:
                lock = "ACCESS EXCLUSIVE"
                if word != "CHECK":
                    lock = "SHARE ROW EXCLUSIVE on both tables"
                added = f"ADD CONSTRAINT {_ident(name)} {word}" if name else f"ADD {word}"
                self.report(
                    "constraint-not-valid",
                    f"{added} on existing table {shown(table)} without NOT VALID scans every "
                    f"row while holding {lock}, blocking writes — add it NOT VALID here and "
                    "VALIDATE CONSTRAINT in a later migration",
                    constraint.location,
                )
            self._remember_check(table, constraint)
            if kind is ConstrType.CONSTR_FOREIGN:
                self._lock(table_key(constraint.pktable), SHARE_ROW_EXCLUSIVE, "ADD FOREIGN KEY")
        elif (
            kind in (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY)
            and not new
            and not constraint.indexname
        ):
            self._unique_without_index(table, constraint)

    def _unique_without_index(self, table: str, constraint: ast.Constraint) -> None:
        word = "PRIMARY KEY" if constraint.contype is ConstrType.CONSTR_PRIMARY else "UNIQUE"
        self.report(
            "add-unique-without-index",
            f"ADD {word} on existing table {shown(table)} builds its index under ACCESS "
            "EXCLUSIVE, blocking reads and writes for the whole build — CREATE UNIQUE INDEX "
            f"CONCURRENTLY in a {_NO_TX} migration, then ADD CONSTRAINT ... {word} USING INDEX",
            constraint.location,
        )

    def _validate(self, table: str, name: str) -> None:
        key = (table, name)
        if key in self.not_valid_here:
            line = self.src.line(self.not_valid_here[key])
            why = (
                "the ADD's lock (ACCESS EXCLUSIVE for a CHECK, SHARE ROW EXCLUSIVE on both "
                "tables for a foreign key) is held through the whole validation scan, blocking "
                "writes"
                if self.transactional
                else "if the scan fails, the ADD stays committed and every retry of this "
                "no-transaction migration fails on the existing constraint"
            )
            self.report(
                "validate-same-migration",
                f"VALIDATE CONSTRAINT {_ident(name)} in the migration that added it NOT VALID "
                f"(line {line}): {why} — validate in a later migration",
            )
        elif self.transactional and table in self.locks:
            mode, what, offset = self.locks[table]
            self.report(
                "validate-same-migration",
                f"VALIDATE CONSTRAINT {_ident(name)} after {what} (line "
                f"{self.src.line(offset)}) took {_LOCK_NAMES[mode]} on {shown(table)} in this "
                "transaction: that lock is held through the whole validation scan, blocking "
                "writes — validate in a migration of its own, before anything else",
            )
        if key in self.state.checks:
            self.state.checks[key] = replace(self.state.checks[key], validated=True)

    def _set_not_null(self, table: str, column: str) -> None:
        for key, check in self.state.checks.items():
            if (
                key[0] == table
                and check.column == column
                and check.validated
                and key not in self.checks_here
            ):
                return
        name = _ident(column)
        self.report(
            "set-not-null-unvalidated",
            f"SET NOT NULL on {shown(table)}.{name} scans the whole table under ACCESS "
            f"EXCLUSIVE: no CHECK ({name} IS NOT NULL) added by an earlier migration and "
            f"validated proves there is no NULL — add CHECK ({name} IS NOT NULL) NOT VALID in "
            "one migration, then VALIDATE it and SET NOT NULL in a later one (PG 12+ skips the "
            "scan) and drop the CHECK",
        )

    def _alter_type(self, table: str, new: bool, column: str, definition: ast.ColumnDef) -> None:
        target = column_type(definition.typeName)
        old = self.state.columns.get((table, column))
        if target is not None:
            self.state.columns[(table, column)] = target
        if new:
            return
        name = _ident(column)
        what = f"ALTER COLUMN {name} TYPE {target or '?'} on {shown(table)}"
        if definition.raw_default is not None:
            reason = "with a USING expression rewrites the table"
        elif definition.collClause is not None:
            reason = "with a new collation rebuilds its indexes"
        elif old is None or target is None:
            self.report(
                "alter-column-type",
                f"{what}: the column's current type is not known from earlier migrations, so "
                "it cannot be proven binary-coercible (a rewrite under ACCESS EXCLUSIVE "
                "otherwise) — if it is a widening (varchar(n) -> varchar(m >= n) or text, "
                f"more numeric precision), allow it with that reason; else {_SWAP}",
            )
            return
        else:
            verdict = coercion(old, target)
            if verdict in ("same", "binary"):
                return
            if verdict == "timezone":
                self.report(
                    "alter-column-type",
                    f"{what} from {old}: timestamp -> timestamptz skips the rewrite only when "
                    "the session TimeZone is UTC (PG 12+); otherwise every row is rewritten "
                    "under ACCESS EXCLUSIVE — set TimeZone to UTC for this migration and check, "
                    f"or {_SWAP}",
                    severity=WARNING,
                )
                return
            reason = f"from {old} is not binary-coercible: it rewrites the table"
        self.report(
            "alter-column-type",
            f"{what} {reason} and rebuilds its indexes under ACCESS EXCLUSIVE — {_SWAP}",
        )

    # --- statements of their own --------------------------------------------------------

    def _TransactionStmt(self, node: ast.TransactionStmt) -> None:
        word = _TRANSACTION_WORDS.get(node.kind, "BEGIN") if node.kind is not None else "BEGIN"
        self.report(
            "transaction-control",
            f"{word} in a migration file: the engine owns the transaction and records the "
            f"version in it — remove it; use the {_NO_TX} header for statements that cannot run "
            "in a transaction",
        )

    def _VariableSetStmt(self, node: ast.VariableSetStmt) -> None:
        if (node.name or "").lower() == "search_path":
            self._search_path()

    def _search_path(self, at: int | None = None) -> None:
        self.report(
                "set-search-path",
            "setting search_path in a migration changes how every later name resolves for "
            "the session (and leaks to the next user of a pooled connection or PgBouncer) — "
            f"qualify every name as {S}.name instead",
            at,
        )

    def _dml(self, verb: str, relation: ast.RangeVar | None) -> None:
        table = table_key(relation)
        if table and table not in self.created:
            self.dml.append((self.stmt.index if self.stmt else 0, self.start, verb, table))

    def _UpdateStmt(self, node: ast.UpdateStmt) -> None:
        self._dml("UPDATE", node.relation)

    def _DeleteStmt(self, node: ast.DeleteStmt) -> None:
        self._dml("DELETE", node.relation)

    def _MergeStmt(self, node: ast.MergeStmt) -> None:
        self._dml("MERGE", node.relation)


def _command_lock(command: ast.AlterTableCmd) -> int:
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


def _string_constant(node: Any) -> str:
    if isinstance(node, ast.A_Const) and isinstance(node.val, ast.String):
        return node.val.sval or ""
    return ""


def _not_null_column(expr: Any) -> str | None:
    """``col`` when *expr* is ``col IS NOT NULL``."""
    if isinstance(expr, ast.NullTest) and expr.nulltesttype is NullTestType.IS_NOT_NULL:
        parts = strings(expr.arg.fields) if isinstance(expr.arg, ast.ColumnRef) else []
        if len(parts) == 1:
            return parts[0]
    return None


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
