"""Constraints and NOT NULL: the checks that scan a whole table while holding a lock that
blocks writes, and the two-step forms (NOT VALID, then VALIDATE in a later migration)."""

from __future__ import annotations

from pglast import ast
from pglast.enums import AlterTableType, ConstrType

from ._common import NO_TX, ident, shown
from ._facts import LOCK_NAMES, Command
from ._walker import Family, Walk

family = Family("constraints")

CONSTRAINT_NOT_VALID = family.rule(
    "constraint-not-valid",
    "ADD CONSTRAINT CHECK / FOREIGN KEY (or an inline one in ADD COLUMN) without NOT VALID on "
    "an existing table",
)
VALIDATE_SAME_MIGRATION = family.rule(
    "validate-same-migration",
    "VALIDATE CONSTRAINT in the migration that added it NOT VALID, or after a write-blocking "
    "lock on that table in the same transaction",
)
SET_NOT_NULL_UNVALIDATED = family.rule(
    "set-not-null-unvalidated",
    "SET NOT NULL without a CHECK (col IS NOT NULL) added by an earlier migration and "
    "validated before",
)
ADD_UNIQUE_WITHOUT_INDEX = family.rule(
    "add-unique-without-index",
    "ADD UNIQUE / PRIMARY KEY on an existing table without USING INDEX",
)

_CHECKED = (ConstrType.CONSTR_CHECK, ConstrType.CONSTR_FOREIGN)
_UNIQUE = (ConstrType.CONSTR_UNIQUE, ConstrType.CONSTR_PRIMARY)


@family.on_command(AlterTableType.AT_AddColumn)
def _inline_constraints(w: Walk, command: Command) -> None:
    column = command.node.def_
    if command.new or not isinstance(column, ast.ColumnDef):
        return
    name = ident(column.colname or "")
    for constraint in column.constraints or ():
        if not isinstance(constraint, ast.Constraint):
            continue
        if constraint.contype in _CHECKED:
            kind = "CHECK" if constraint.contype is ConstrType.CONSTR_CHECK else "REFERENCES"
            w.report(
                CONSTRAINT_NOT_VALID,
                f"ADD COLUMN {name} with an inline {kind} constraint checks every row of "
                f"{shown(command.table)} under ACCESS EXCLUSIVE — add the column plain, then "
                "ADD CONSTRAINT ... NOT VALID, and VALIDATE CONSTRAINT in a later migration",
                constraint.location,
            )
        elif constraint.contype in _UNIQUE:
            _unique_without_index(w, command.table, constraint)


@family.on_command(AlterTableType.AT_AddConstraint)
def _add_constraint(w: Walk, command: Command) -> None:
    constraint = command.node.def_
    if command.new or not isinstance(constraint, ast.Constraint):
        return
    kind = constraint.contype
    if kind in _CHECKED and not constraint.skip_validation:
        word = "CHECK" if kind is ConstrType.CONSTR_CHECK else "FOREIGN KEY"
        lock = "ACCESS EXCLUSIVE" if word == "CHECK" else "SHARE ROW EXCLUSIVE on both tables"
        name = constraint.conname or ""
        added = f"ADD CONSTRAINT {ident(name)} {word}" if name else f"ADD {word}"
        w.report(
            CONSTRAINT_NOT_VALID,
            f"{added} on existing table {shown(command.table)} without NOT VALID scans every "
            f"row while holding {lock}, blocking writes — add it NOT VALID here and VALIDATE "
            "CONSTRAINT in a later migration",
            constraint.location,
        )
    elif kind in _UNIQUE and not constraint.indexname:
        _unique_without_index(w, command.table, constraint)


def _unique_without_index(w: Walk, table: str, constraint: ast.Constraint) -> None:
    word = "PRIMARY KEY" if constraint.contype is ConstrType.CONSTR_PRIMARY else "UNIQUE"
    w.report(
        ADD_UNIQUE_WITHOUT_INDEX,
        f"ADD {word} on existing table {shown(table)} builds its index under ACCESS EXCLUSIVE, "
        "blocking reads and writes for the whole build — CREATE UNIQUE INDEX CONCURRENTLY in "
        f"a {NO_TX} migration, then ADD CONSTRAINT ... {word} USING INDEX",
        constraint.location,
    )


@family.on_command(AlterTableType.AT_ValidateConstraint)
def _validate(w: Walk, command: Command) -> None:
    name, table, facts = command.node.name, command.table, w.facts
    if not name:
        return
    if not w.transactional:
        # each statement commits on its own: the ADD's lock is gone before the scan starts
        return
    key = (table, name)
    if key in facts.not_valid_here:
        line = w.line(facts.not_valid_here[key])
        why = (
            "the ADD's lock (ACCESS EXCLUSIVE for a CHECK, SHARE ROW EXCLUSIVE on both tables "
            "for a foreign key) is held through the whole validation scan, blocking writes"
        )
        w.report(
            VALIDATE_SAME_MIGRATION,
            f"VALIDATE CONSTRAINT {ident(name)} in the migration that added it NOT VALID "
            f"(line {line}): {why} — validate in a later migration",
        )
    elif table in facts.locks:
        lock = facts.locks[table]
        w.report(
            VALIDATE_SAME_MIGRATION,
            f"VALIDATE CONSTRAINT {ident(name)} after {lock.what} (line {w.line(lock.offset)}) "
            f"took {LOCK_NAMES[lock.mode]} on {shown(table)} in this transaction: that lock is "
            "held through the whole validation scan, blocking writes — validate in a migration "
            "of its own, before anything else",
        )


@family.on_command(AlterTableType.AT_SetNotNull)
def _set_not_null(w: Walk, command: Command) -> None:
    column, table = command.node.name, command.table
    if not column or command.new or (table, column) in w.state.not_null:
        return  # already NOT NULL: PostgreSQL checks nothing
    for key, check in w.state.checks.items():
        if (
            key[0] == table
            and check.column == column
            and check.validated
            and key not in w.facts.checks_here
        ):
            return
    name = ident(column)
    w.report(
        SET_NOT_NULL_UNVALIDATED,
        f"SET NOT NULL on {shown(table)}.{name} scans the whole table under ACCESS EXCLUSIVE: "
        f"no CHECK ({name} IS NOT NULL) added by an earlier migration and validated proves "
        f"there is no NULL — add CHECK ({name} IS NOT NULL) NOT VALID in one migration, then "
        "VALIDATE it and SET NOT NULL in a later one (PG 12+ skips the scan) and drop the CHECK",
    )
