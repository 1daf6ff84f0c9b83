"""What every part of the linter shares: findings, rule ids, the sentinel, parsing, tree walks."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import pglast
from pglast import ast
from pglast.parser import ParseError

from .._sql import SCHEMA_PLACEHOLDER

S = SCHEMA_PLACEHOLDER
"""``{{schema}}``, for messages."""

SENTINEL_NAME = "{schema}"
"""The schema name ``{{schema}}`` parses to once rendered as :data:`SENTINEL`."""

SENTINEL = '"' + SENTINEL_NAME + '"'
"""What ``{{schema}}`` is rendered to before parsing: a quoted identifier of exactly the same
length (10 characters), so every offset the parser reports is also an offset in the file."""

assert len(SENTINEL) == len(SCHEMA_PLACEHOLDER)

CATALOG_SCHEMAS = frozenset({"pg_catalog", "information_schema", "pg_temp"})

ERROR = "error"
WARNING = "warning"

RULES: dict[str, str] = {
    "index-not-concurrent": "CREATE INDEX without CONCURRENTLY on a table that already exists",
    "drop-index-not-concurrent": "DROP INDEX without CONCURRENTLY",
    "concurrently-in-transaction": "CREATE/DROP INDEX, REINDEX or DETACH PARTITION CONCURRENTLY "
    "in a transactional migration (needs -- tenantmig:no-transaction)",
    "concurrently-not-retryable": "warning: in a no-transaction migration, CREATE INDEX "
    "CONCURRENTLY without a name or IF NOT EXISTS, DROP INDEX CONCURRENTLY without IF EXISTS "
    "(a retry after the runner was killed fails or duplicates the index)",
    "constraint-not-valid": "ADD CONSTRAINT CHECK / FOREIGN KEY (or an inline one in ADD COLUMN) "
    "without NOT VALID on an existing table",
    "validate-same-migration": "VALIDATE CONSTRAINT in the migration that added it NOT VALID, or "
    "after a write-blocking lock on that table in the same transaction",
    "set-not-null-unvalidated": "SET NOT NULL without a CHECK (col IS NOT NULL) added by an "
    "earlier migration and validated before",
    "add-column-not-null-no-default": "ADD COLUMN ... NOT NULL without DEFAULT on an existing "
    "table",
    "add-column-volatile-default": "ADD COLUMN with a volatile default, serial, identity or "
    "stored generated value: rewrites the table",
    "alter-column-type": "ALTER COLUMN TYPE that is not binary-coercible (rewrites the table); "
    "timestamp -> timestamptz is a warning (depends on TimeZone)",
    "add-unique-without-index": "ADD UNIQUE / PRIMARY KEY on an existing table without USING "
    "INDEX",
    "rename-column": "RENAME COLUMN of an existing table (breaks running code)",
    "rename-table": "RENAME of an existing table or view (breaks running code)",
    "drop-column": "DROP COLUMN of an existing table (breaks running code, loses data)",
    "drop-table": "DROP TABLE of an existing table (breaks running code, loses data)",
    "enum-value-used-same-migration": "a value added by ALTER TYPE ... ADD VALUE used later in "
    "the same transaction (55P04)",
    "enum-value-without-if-not-exists": "warning: ALTER TYPE ... ADD VALUE without IF NOT "
    "EXISTS (a retry fails: values cannot be dropped)",
    "unbatched-dml": "UPDATE, DELETE or MERGE of an existing table in a migration that also "
    "changes the schema (backfill in a Python migration with ctx.backfill)",
    "transaction-control": "BEGIN, COMMIT, ROLLBACK, SAVEPOINT, ... in a migration file "
    "(the engine owns the transaction)",
    "set-search-path": "SET / RESET search_path in a migration (qualify names instead)",
    "partition-like-indexes": "CREATE TABLE (LIKE t INCLUDING ALL/INDEXES) PARTITION BY: the "
    "copied unique indexes lack the partition key",
    "like-copies-defaults": "warning: CREATE TABLE (LIKE t INCLUDING ALL/DEFAULTS) copies "
    "nextval() defaults that keep using t's sequence",
    "unqualified-name": "a relation, index, type, sequence or function created, altered, "
    "dropped or referenced without a {{schema}}. (or shared schema) qualifier",
    "other-tenant-schema": "a name qualified with a schema that is neither {{schema}}, a "
    "shared schema nor pg_catalog/information_schema (e.g. another tenant)",
    "unparsable": "a statement PostgreSQL's parser rejects",
    "unused-allow": "warning: a -- tenantmig:allow comment that matches no finding (or names "
    "an unknown rule)",
}
"""Rule id -> one-line description. Only SQL files (V and U) are linted: Python migrations are
code, not checked (their ``ctx.execute`` SQL is the author's responsibility)."""


@dataclass(frozen=True)
class Finding:
    """One problem in one migration file, at one line."""

    path: str
    line: int
    rule: str
    message: str
    """What is dangerous — the safe pattern."""
    severity: str
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
    offset: int
    """Where the parser stopped."""
    message: str


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
            self.broken.append(Broken(0, 0, offset, _error_message(exc)))
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
                self.broken.append(Broken(index, start, offset, _error_message(exc)))
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
