"""What every part of the linter shares: rules, findings, the sentinel, parsing, tree walks."""

from __future__ import annotations

import bisect
import re
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import pglast
from pglast import ast
from pglast.parser import ParseError

from .._sql import SCHEMA_PLACEHOLDER, quote_ident

S = SCHEMA_PLACEHOLDER
"""``{{schema}}``, for messages."""

SENTINEL_NAME = "{schema}"
"""The schema name ``{{schema}}`` parses to once rendered as :data:`SENTINEL`."""

SENTINEL = '"' + SENTINEL_NAME + '"'
"""What ``{{schema}}`` is rendered to before parsing: a quoted identifier of exactly the same
length (10 characters), so every offset the parser reports is also an offset in the file."""

assert len(SENTINEL) == len(SCHEMA_PLACEHOLDER)

CATALOG_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_temp"})

NO_TX = "`-- tenantmig:no-transaction`"
"""The header of a migration that runs outside a transaction, for messages."""

_PLAIN_IDENT = re.compile(r"[a-z_][a-z0-9_$]*")

Severity = Literal["error", "warning"]
ERROR: Severity = "error"
WARNING: Severity = "warning"


@dataclass(frozen=True)
class Rule:
    """One lint rule: what ``tenantmig lint --list`` shows and what its findings carry.

    Each rule is declared once, next to the code that reports it (a family module, the walker
    for ``unparsable``, the allow comments for ``unused-allow``); ``_registry`` collects them.
    Its page is ``docs/rules/<id>.md``.
    """

    id: str
    summary: str
    """One line: what the rule catches."""
    severity: Severity
    """The severity of its findings (``alter-column-type`` reports one case as a warning)."""
    family: str
    """The family module it belongs to, for the docs' index."""

    @property
    def listing(self) -> str:
        """The summary as ``tenantmig lint --list`` prints it: warnings say so first."""
        return f"warning: {self.summary}" if self.severity == WARNING else self.summary


@dataclass(frozen=True)
class Finding:
    """One problem in one migration file, at one line."""

    path: str
    line: int
    rule: str
    message: str
    """What is dangerous — the safe pattern."""
    severity: Severity
    """``"error"`` or ``"warning"``."""
    allowed: str | None = None
    """The reason given by a matching ``-- tenantmig:allow``, when one covers this finding."""

    @property
    def blocking(self) -> bool:
        """An error no ``tenantmig:allow`` covers: ``up`` must refuse to run."""
        return self.severity == ERROR and self.allowed is None

    def __str__(self) -> str:
        text = f"{self.path}:{self.line} {self.rule}: {self.message}"
        if self.allowed is not None:
            text += f" (allowed: {self.allowed})"
        return text


class Raw(NamedTuple):
    """A finding before the allow comments are applied: where, by statement and offset."""

    statement: int
    """The statement's index (allow comments cover statements)."""
    offset: int
    rule: str
    message: str
    severity: Severity


def render_sentinel(template: str) -> str:
    """*template* with ``{{schema}}`` replaced by the same-length :data:`SENTINEL`."""
    return template.replace(SCHEMA_PLACEHOLDER, SENTINEL)


@dataclass(frozen=True)
class Statement:
    """One parsed statement: its node and where it starts and ends in the file."""

    index: int
    node: ast.Node
    start: int
    """Offset of its first token (comments and blanks before it skipped)."""
    end: int


@dataclass(frozen=True)
class Broken:
    """A statement the parser rejects."""

    index: int
    start: int
    """Offset of its first token."""
    offset: int
    """Where the parser stopped."""
    message: str
    end: int


class Text:
    """The rendered text of one SQL file, its line map and its statements."""

    def __init__(self, template: str) -> None:
        self.template = template
        self.text = render_sentinel(template)
        self._line_starts = [0] + [i + 1 for i, c in enumerate(self.text) if c == "\n"]
        self.statements: list[Statement] = []
        self.broken: list[Broken] = []
        self._parse()

    def line(self, offset: int) -> int:
        """1-based line of *offset*."""
        return bisect.bisect_right(self._line_starts, max(0, offset))

    def _parse(self) -> None:
        try:
            raws = pglast.parse_sql(self.text)
        except ParseError:
            self._parse_one_by_one()
            return
        for index, raw in enumerate(raws):
            self._add(index, raw)

    def _add(self, index: int, raw: ast.RawStmt) -> None:
        if raw.stmt is None:
            return
        location = raw.stmt_location or 0
        length = raw.stmt_len or 0
        end = location + length if length else len(self.text)
        self.statements.append(Statement(index, raw.stmt, skip_blanks(self.text, location), end))

    def _parse_one_by_one(self) -> None:
        """Parse statement by statement, to lint what parses and report each one that does not.

        Each piece is parsed padded with blanks (newlines kept) up to its start, so the
        parser's offsets stay offsets in the whole file.
        """
        try:
            pieces = pglast.split(self.text, with_parser=False, only_slices=True)
        except ParseError as exc:
            offset = _error_offset(exc, len(self.text))
            start = skip_blanks(self.text, 0)
            self.broken.append(Broken(0, start, offset, _error_message(exc), len(self.text)))
            return
        for index, piece in enumerate(pieces):
            start = piece.start or 0
            stop = piece.stop if piece.stop is not None else len(self.text)
            padded = "".join("\n" if c == "\n" else " " for c in self.text[:start])
            padded += self.text[start:stop]
            try:
                raws = pglast.parse_sql(padded)
            except ParseError as exc:
                offset = _error_offset(exc, stop)
                first = skip_blanks(self.text, start)
                self.broken.append(Broken(index, first, offset, _error_message(exc), stop))
                continue
            for raw in raws:
                self._add(index, raw)


def _error_offset(exc: ParseError, default: int) -> int:
    location = exc.args[1] if len(exc.args) > 1 else None
    return location if isinstance(location, int) else max(0, default - 1)


def _error_message(exc: ParseError) -> str:
    return str(exc.args[0]) if exc.args else str(exc)


def skip_blanks(text: str, offset: int) -> int:
    """The offset of the first token at or after *offset*: skips blanks and comments."""
    i, n = offset, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i):
            newline = text.find("\n", i)
            i = n if newline < 0 else newline + 1
        elif text.startswith("/*", i):
            depth, i = 1, i + 2
            while i < n and depth:
                if text.startswith("/*", i):
                    depth, i = depth + 1, i + 2
                elif text.startswith("*/", i):
                    depth, i = depth - 1, i + 2
                else:
                    i += 1
        else:
            break
    return i


def strings(items: Any) -> list[str]:
    """The values of a tuple of ``String`` nodes (a qualified name in the parse tree)."""
    if not isinstance(items, tuple):
        return []
    return [item.sval for item in items if isinstance(item, ast.String) and item.sval is not None]


def dotted(parts: list[str]) -> str:
    """``schema.name`` for messages, with the sentinel shown as ``{{schema}}``."""
    return ".".join(S if p == SENTINEL_NAME else p for p in parts)


def table_key(relation: ast.RangeVar | None) -> str:
    """How the linter names a table: bare for this tenant's tables, ``schema.name`` otherwise."""
    if relation is None:
        return ""
    return name_key([relation.schemaname or "", relation.relname or ""])


def name_key(parts: list[str]) -> str:
    """Like :func:`table_key`, from the parts of a qualified name."""
    parts = [p for p in parts if p]
    if not parts:
        return ""
    if len(parts) == 1 or parts[-2] == SENTINEL_NAME:
        return parts[-1]
    return f"{parts[-2]}.{parts[-1]}"


def shown(key: str) -> str:
    """A table key for messages: ``{{schema}}.name`` for this tenant's tables."""
    return key if "." in key else f"{S}.{key}"


def ident(name: str) -> str:
    """*name* as SQL would need it written: bare when it can be, quoted otherwise."""
    return name if _PLAIN_IDENT.fullmatch(name) else quote_ident(name)
