"""``lint --fix``: put ``{{schema}}.`` in front of unqualified names, conservatively.

Only names the parser resolves to a schema object are touched, each at the exact token the
parser (or, for names kept as plain strings, a fixed statement shape) points to; text inside
strings, dollar quotes and comments is never changed. If anything does not line up, that name
is left alone; if the result does not parse as the same number of statements, the text is
returned unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

import pglast
from pglast import ast
from pglast.enums import ObjectType
from pglast.parser import ParseError, Token, scan

from .._sql import SCHEMA_PLACEHOLDER
from ._common import render_sentinel, strings
from ._names import NameRef, references
from ._run import LintState
from ._state import State

_COMMENTS = frozenset({"SQL_COMMENT", "C_COMMENT"})
_NAME_KINDS = frozenset({"NO_KEYWORD", "UNRESERVED_KEYWORD", "COL_NAME_KEYWORD",
                         "TYPE_FUNC_NAME_KEYWORD"})
_DOT, _COMMA, _OPEN, _CLOSE = "ASCII_46", "ASCII_44", "ASCII_40", "ASCII_41"
_DROP_LISTS = frozenset(
    {
        ObjectType.OBJECT_TABLE,
        ObjectType.OBJECT_INDEX,
        ObjectType.OBJECT_SEQUENCE,
        ObjectType.OBJECT_VIEW,
        ObjectType.OBJECT_MATVIEW,
        ObjectType.OBJECT_FOREIGN_TABLE,
        ObjectType.OBJECT_FUNCTION,
        ObjectType.OBJECT_PROCEDURE,
        ObjectType.OBJECT_ROUTINE,
    }
)
_DROP_ON = frozenset({ObjectType.OBJECT_TRIGGER, ObjectType.OBJECT_POLICY, ObjectType.OBJECT_RULE})
_DROP_HEAD = frozenset({"DROP", "TABLE", "INDEX", "SEQUENCE", "VIEW", "MATERIALIZED", "FOREIGN",
                        "FUNCTION", "PROCEDURE", "ROUTINE", "CONCURRENTLY", "IF_P", "EXISTS"})


def fix_qualifiers(
    text: str, *, shared_schemas: Sequence[str] = (), earlier: LintState | None = None
) -> str:
    """*text* with ``{{schema}}.`` added before each unqualified relation, index, type,
    sequence or function name that a statement creates, alters, drops or references.

    Calls of functions and procedures, and the sequence of ``nextval('name')`` (and
    ``currval``, ``setval``), are qualified when *text* or an earlier migration (*earlier*,
    e.g. every migration of the folder) created that function or sequence: the others are
    built-in or an extension's. Function bodies (strings) are never rewritten: they resolve
    through the migration's ``search_path`` when called.

    *shared_schemas* is accepted for symmetry with the linter: names already qualified (with
    any schema) are never changed, and unqualified names always become ``{{schema}}.name``.
    """
    del shared_schemas
    rendered = render_sentinel(text)
    try:
        raws = pglast.parse_sql(rendered)
        tokens = [t for t in scan(rendered) if t.name not in _COMMENTS]
    except ParseError:
        return text
    known = (earlier or LintState()).after(text)
    fixer = _Fixer(rendered, tokens, known)
    for raw in raws:
        if raw.stmt is None:
            continue
        begin = raw.stmt_location or 0
        end = begin + raw.stmt_len if raw.stmt_len else len(rendered)
        fixer.statement(raw.stmt, begin, end)
    if not fixer.inserts:
        return text
    fixed = text
    for position in sorted(fixer.inserts, reverse=True):
        fixed = fixed[:position] + SCHEMA_PLACEHOLDER + "." + fixed[position:]
    try:
        again = pglast.parse_sql(render_sentinel(fixed))
    except ParseError:
        return text
    return fixed if len(again) == len(raws) else text


class _Fixer:
    def __init__(self, text: str, tokens: list[Token], known: State) -> None:
        self.text = text
        self.known = known
        self.tokens = tokens
        self.by_start = {t.start: i for i, t in enumerate(tokens)}
        self.inserts: set[int] = set()
        self.lo = self.hi = 0

    def statement(self, node: ast.Node, begin: int, end: int) -> None:
        indexes = [i for i, t in enumerate(self.tokens) if begin <= t.start < end]
        if not indexes:
            return
        self.lo, self.hi = indexes[0], indexes[-1] + 1
        for ref in references(node, self.known.functions):
            if ref.in_string:
                self._qualify_in_string(ref)
            elif ref.schema is None and ref.location is not None:
                index = self.by_start.get(ref.location)
                if index is not None:
                    self._insert_if_bare(index, ref.name)
        self._plain_string_names(node)

    def _qualify_in_string(self, ref: NameRef) -> None:
        """``nextval('seq')`` -> ``nextval('{{schema}}.seq')``, for a sequence the migrations
        created, written as a plain string of exactly its name."""
        call = self.by_start.get(ref.location) if ref.location is not None else None
        if ref.schema is not None or call is None or ref.name not in self.known.sequences:
            return
        index = self._after(call, _OPEN)
        if index is None or self._word(index) != "SCONST":
            return
        at = self.tokens[index].start
        if self.text.startswith(f"'{ref.name}'", at):
            self.inserts.add(at + 1)

    # --- tokens -------------------------------------------------------------------------

    def _word(self, index: int) -> str:
        return self.tokens[index].name if self.lo <= index < self.hi else ""

    def _matches(self, index: int, name: str) -> bool:
        if not self.lo <= index < self.hi:
            return False
        token = self.tokens[index]
        if token.kind not in _NAME_KINDS:
            return False
        word = self.text[token.start : token.end + 1]
        if word.startswith('"'):
            return word[1:-1].replace('""', '"') == name
        return word.lower() == name

    def _insert_if_bare(self, index: int, name: str) -> None:
        """Qualify the name at token *index* if it is *name*, alone (no dot either side)."""
        if (
            self._matches(index, name)
            and self._word(index - 1) != _DOT
            and self._word(index + 1) != _DOT
        ):
            self.inserts.add(self.tokens[index].start)

    def _after(self, index: int, *words: str) -> int | None:
        """The index just after the first of *words* at or after *index*."""
        for i in range(max(index, self.lo), self.hi):
            if self.tokens[i].name in words:
                return i + 1
        return None

    def _names_list(self, index: int) -> list[tuple[int, int]]:
        """``a, s.b(int), c``: (first token, number of parts) of each name from *index*."""
        found = []
        while index < self.hi and self._word(index) != "ASCII_59":
            start, parts = index, 1
            while self._word(index + 1) == _DOT:
                index, parts = index + 2, parts + 1
            found.append((start, parts))
            index += 1
            if self._word(index) == _OPEN:
                depth = 0
                while index < self.hi:
                    depth += {_OPEN: 1, _CLOSE: -1}.get(self._word(index), 0)
                    index += 1
                    if depth == 0:
                        break
            if self._word(index) != _COMMA:
                break
            index += 1
        return found

    # --- names kept as plain strings ----------------------------------------------------

    def _qualify_after(self, parts: list[str], *words: str, start: int | None = None) -> None:
        if len(parts) != 1:
            return
        index = self._after(self.lo if start is None else start, *words)
        if index is not None:
            self._insert_if_bare(index, parts[0])

    def _plain_string_names(self, node: ast.Node) -> None:
        if isinstance(node, ast.CreateFunctionStmt):
            self._qualify_after(strings(node.funcname), "FUNCTION", "PROCEDURE")
        elif isinstance(node, ast.CreateTrigStmt):
            execute = self._after(self.lo, "EXECUTE")
            if execute is not None:
                self._qualify_after(strings(node.funcname), "FUNCTION", "PROCEDURE",
                                    start=execute)
        elif isinstance(node, ast.CreateEnumStmt | ast.CreateRangeStmt | ast.AlterEnumStmt):
            self._qualify_after(strings(node.typeName), "TYPE_P")
        elif isinstance(node, ast.DefineStmt) and node.kind is ObjectType.OBJECT_TYPE:
            self._qualify_after(strings(node.defnames), "TYPE_P")
        elif isinstance(node, ast.CreateDomainStmt):
            self._qualify_after(strings(node.domainname), "DOMAIN_P")
        elif isinstance(node, ast.AlterDomainStmt):
            self._qualify_after(strings(node.typeName), "DOMAIN_P")
        elif isinstance(node, ast.AlterFunctionStmt) and node.func is not None:
            self._qualify_after(strings(node.func.objname), "FUNCTION", "PROCEDURE", "ROUTINE")
        elif isinstance(node, ast.RenameStmt) and node.relation is None:
            if node.renameType is ObjectType.OBJECT_TYPE:
                self._qualify_after(strings(node.object), "TYPE_P")
            elif node.renameType is ObjectType.OBJECT_DOMAIN:
                self._qualify_after(strings(node.object), "DOMAIN_P")
            elif isinstance(node.object, ast.ObjectWithArgs):
                self._qualify_after(strings(node.object.objname), "FUNCTION", "PROCEDURE",
                                    "ROUTINE")
        elif isinstance(node, ast.DropStmt):
            self._drop(node)

    def _drop(self, node: ast.DropStmt) -> None:
        objects = node.objects or ()
        if node.removeType in _DROP_ON:
            for obj in objects:
                self._qualify_after(strings(obj)[:-1], "ON")
            return
        if node.removeType not in _DROP_LISTS:
            return
        index = self.lo
        while index < self.hi and self._word(index) in _DROP_HEAD:
            index += 1
        names = self._names_list(index)
        if len(names) != len(objects):
            return
        for (start, parts), obj in zip(names, objects, strict=True):
            name = strings(obj.objname) if isinstance(obj, ast.ObjectWithArgs) else strings(obj)
            if parts == 1 and len(name) == 1:
                self._insert_if_bare(start, name[0])
