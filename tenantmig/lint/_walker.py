"""One pass over a migration's statements, dispatching each to the rule families' handlers.

A family module declares its rules and registers handlers with its :class:`Family`: per
statement type (``@family.on(ast.IndexStmt)``), per ``ALTER TABLE`` subcommand
(``@family.on_command(AlterTableType.AT_AddColumn)``), for every statement, or once at the
end. A handler reads the :class:`Walk` (the file, the statement at hand, the
:class:`~._facts.Facts` so far) and reports findings; it never records facts: the walker does
that after every handler has seen the statement.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from pglast import ast
from pglast.enums import AlterTableType, ObjectType

from ._common import CATALOG_SCHEMAS, ERROR, SENTINEL_NAME, Raw, Rule, Severity, Statement, Text
from ._facts import Command, Facts
from ._state import State

UNPARSABLE = Rule("unparsable", "a statement PostgreSQL's parser rejects", ERROR, "files")
"""Reported by the walker itself, for each statement the parser rejects."""


class Walk:
    """What a handler sees of the migration being linted, and where it reports."""

    def __init__(
        self, source: Text, transactional: bool, facts: Facts, shared: Sequence[str]
    ) -> None:
        self.src = source
        self.transactional = transactional
        self.facts = facts
        self.shared = tuple(shared)
        """The shared schemas, in the order the configuration gives them."""
        self.allowed_schemas = CATALOG_SCHEMAS | {SENTINEL_NAME} | set(shared)
        self.raw: list[Raw] = []
        self._stmt: Statement | None = None

    def enter(self, statement: Statement) -> None:
        """Make *statement* the one being walked."""
        self._stmt = statement

    @property
    def stmt(self) -> Statement:
        """The statement being walked."""
        assert self._stmt is not None
        return self._stmt

    @property
    def start(self) -> int:
        """Where the statement being walked starts."""
        return self.stmt.start

    @property
    def state(self) -> State:
        """What earlier migrations (and this one so far) established."""
        return self.facts.state

    def report(
        self, rule: Rule, message: str, at: int | None = None, severity: Severity | None = None
    ) -> None:
        """A finding of *rule* in the current statement, with the rule's own severity unless
        *severity* says otherwise. It is shown at the statement's first line (where an allow
        comment stands), whatever *at*, the offset of the clause it is about, says."""
        offset = at if at is not None and at >= 0 else self.stmt.start
        self.report_at(rule, self.stmt.index, offset, message, severity)

    def report_at(
        self,
        rule: Rule,
        index: int,
        offset: int,
        message: str,
        severity: Severity | None = None,
    ) -> None:
        """A finding of *rule* in statement *index* at *offset* (for rules judged at the end)."""
        self.raw.append(Raw(index, offset, rule.id, message, severity or rule.severity))

    def line(self, offset: int) -> int:
        """1-based line of *offset* in the file."""
        return self.src.line(offset)

    def literal_offset(self, value: str) -> int | None:
        """Where the string constant *value* first appears in the current statement."""
        found = self.src.text.find("'" + value.replace("'", "''") + "'", self.stmt.start)
        return found if 0 <= found < self.stmt.end else None


Handler = Callable[[Walk, Any], None]
"""Called with the walk and a statement node of the type it was registered for."""
CommandHandler = Callable[[Walk, Command], None]
EndHandler = Callable[[Walk], None]
H = TypeVar("H", bound=Callable[..., None])


class Family:
    """A group of related rules and the handlers that report them (one module each)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.rules: list[Rule] = []
        self.statements: dict[type, list[Handler]] = {}
        self.commands: dict[AlterTableType, list[CommandHandler]] = {}
        self.every: list[Handler] = []
        self.ends: list[EndHandler] = []

    def rule(self, rule_id: str, summary: str, severity: Severity = ERROR) -> Rule:
        """Declare a rule of this family (it is collected into the registry)."""
        rule = Rule(rule_id, summary, severity, self.name)
        self.rules.append(rule)
        return rule

    def on(self, *node_types: type) -> Callable[[H], H]:
        """Register a handler for statements of these node types."""

        def register(handler: H) -> H:
            for node_type in node_types:
                self.statements.setdefault(node_type, []).append(handler)
            return handler

        return register

    def on_command(self, *subtypes: AlterTableType) -> Callable[[H], H]:
        """Register a handler for these subcommands of ``ALTER TABLE`` (of a table)."""

        def register(handler: H) -> H:
            for subtype in subtypes:
                self.commands.setdefault(subtype, []).append(handler)
            return handler

        return register

    def on_every_statement(self, handler: H) -> H:
        """Register a handler that sees every statement, whatever its type."""
        self.every.append(handler)
        return handler

    def at_end(self, handler: H) -> H:
        """Register a handler called once, after the last statement."""
        self.ends.append(handler)
        return handler


class _Dispatch:
    """The families' handlers merged, in family order."""

    def __init__(self, families: Sequence[Family]) -> None:
        self.every = [h for f in families for h in f.every]
        self.ends = [h for f in families for h in f.ends]
        self.statements: dict[type, list[Handler]] = {}
        self.commands: dict[AlterTableType, list[CommandHandler]] = {}
        for family in families:
            for node_type, handlers in family.statements.items():
                self.statements.setdefault(node_type, []).extend(handlers)
            for subtype, commands in family.commands.items():
                self.commands.setdefault(subtype, []).extend(commands)

    def for_command(self, command: Command) -> list[CommandHandler]:
        subtype = command.node.subtype
        return self.commands.get(subtype, []) if subtype is not None else []


def walk_statements(
    source: Text,
    transactional: bool,
    state: State,
    shared: Sequence[str],
    families: Sequence[Family],
) -> list[Raw]:
    """Walk *source*'s statements in order; the findings, before allow comments apply.

    *state* (what earlier migrations established) is updated in place.
    """
    facts = Facts(state, transactional)
    w = Walk(source, transactional, facts, shared)
    dispatch = _Dispatch(families)
    for broken in source.broken:
        w.report_at(
            UNPARSABLE,
            broken.index,
            broken.offset,
            f"PostgreSQL cannot parse this statement: {broken.message} — fix the syntax (the "
            "server would reject it for every tenant)",
        )
    for statement in source.statements:
        w.enter(statement)
        node = statement.node
        for handler in dispatch.every:
            handler(w, node)
        for handler in dispatch.statements.get(type(node), ()):
            handler(w, node)
        if isinstance(node, ast.AlterTableStmt) and node.objtype is ObjectType.OBJECT_TABLE:
            for command in facts.alter_table(node, statement.start):
                for command_handler in dispatch.for_command(command):
                    command_handler(w, command)
                facts.after_command(command, statement.start)
        facts.after_statement(statement)
    for end in dispatch.ends:
        end(w)
    return w.raw
