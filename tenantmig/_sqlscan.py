"""What the loader learns from SQL text with PostgreSQL's own scanner and parser:
where ``{{schema}}`` stands inside string constants, whether a step can share a batch,
which indexes it builds concurrently. Pure functions of the text, no files, no database."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pglast
from pglast import ast

from ._sql import NO_STRINGS, SCHEMA_PLACEHOLDER, StringContexts, render

# Statements a batch cannot carry: they would end the batch's transaction or change the
# session that later tenants run on.
_UNBATCHABLE = frozenset({"TransactionStmt", "VariableSetStmt", "DiscardStmt"})


def batchable(text: str) -> bool:
    """Whether transactional SQL *text* can share one round trip with its neighbours: it
    parses, and no statement of it controls the transaction or changes a session setting."""
    try:
        parsed = pglast.parse_sql(render(text, "x"))
    except Exception:  # the server reports the syntax error, naming this migration
        return False
    return bool(parsed) and not any(
        type(raw.stmt).__name__ in _UNBATCHABLE or _sets_session(raw.stmt) for raw in parsed
    )


def _sets_session(stmt: ast.Node | None) -> bool:
    """Whether *stmt* calls set_config other than with a constant ``true`` (transaction-
    local): a setting for the whole session, like a SET. (Inside a DO block or a function
    body it is not seen: the body is a string.)"""
    for node in walk(stmt):
        if isinstance(node, ast.FuncCall) and node.funcname and \
                getattr(node.funcname[-1], "sval", None) == "set_config":
            args = node.args or ()
            local = args[2] if len(args) > 2 else None
            if isinstance(local, ast.NamedArgExpr):
                local = local.arg
            if not (isinstance(local, ast.A_Const) and isinstance(local.val, ast.Boolean)
                    and local.val.boolval):
                return True
    return False


def walk(node: Any) -> Iterator[ast.Node]:
    """Every node of a pglast parse tree under *node* (itself included), depth first."""
    stack: list[Any] = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, tuple):
            stack.extend(reversed(item))
        elif isinstance(item, ast.Node):
            yield item
            children = [getattr(item, name) for name in item]
            stack.extend(c for c in reversed(children) if isinstance(c, ast.Node | tuple))


def string_contexts(text: str) -> StringContexts:
    """Where ``{{schema}}`` stands inside string constants of *text* (see
    :class:`StringContexts`): PostgreSQL's own scanner finds the constants, and the
    bodies of dollar-quoted ones (PL/pgSQL is lexed by the same scanner) are scanned in
    turn, so a placeholder in a string inside a function body is escaped for it."""
    if SCHEMA_PLACEHOLDER not in text:
        return NO_STRINGS
    found: dict[str, set[int]] = {"literal": set(), "escape": set(), "opaque": set()}
    tags: set[str] = set()
    try:
        _scan_strings(text, 0, found, tags)
    except Exception:  # the server will report the syntax error
        # Nothing is known of where the constants are: a name with ' \ or $ could end
        # one that the broken text leaves open, so such a name is refused (opaque).
        return StringContexts(opaque=frozenset(
            i for i in range(len(text)) if text.startswith(SCHEMA_PLACEHOLDER, i)))
    return StringContexts(
        literal=frozenset(found["literal"]),
        escape=frozenset(found["escape"]),
        opaque=frozenset(found["opaque"]),
        tags=frozenset(tags),
    )


def _scan_strings(text: str, base: int, found: dict[str, set[int]], tags: set[str]) -> None:
    # The scanner reports byte offsets; map them to character offsets.
    encoded = text.encode("utf-8")
    for t in pglast.parser.scan(text):
        if t.name not in ("SCONST", "USCONST"):
            continue
        lo = len(encoded[: t.start].decode("utf-8", "ignore"))
        hi = len(encoded[: t.end + 1].decode("utf-8", "ignore"))
        inside = _placeholder_offsets(text, lo, hi)
        if not inside:
            continue
        first = text[lo].lower()
        if first == "$":
            tag = text[lo : text.index("$", lo + 1) + 1]
            tags.add(tag)
            body = text[lo + len(tag) : hi - len(tag)]
            try:
                _scan_strings(body, base + lo + len(tag), found, tags)
            except Exception:  # not SQL (another language): refuse risky names there
                found["opaque"].update(base + i for i in inside)
        elif t.name == "USCONST" or first == "u":
            found["opaque"].update(base + i for i in inside)
        elif first == "e":
            found["escape"].update(base + i for i in inside)
        else:
            found["literal"].update(base + i for i in inside)


def _placeholder_offsets(text: str, lo: int, hi: int) -> list[int]:
    offsets = []
    start = text.find(SCHEMA_PLACEHOLDER, lo)
    while start != -1 and start < hi:
        offsets.append(start)
        start = text.find(SCHEMA_PLACEHOLDER, start + 1)
    return offsets


def concurrent_index(statement: str) -> str:
    """The name of the index a ``CREATE INDEX CONCURRENTLY`` statement builds, else ''."""
    if "concurrently" not in statement.lower():
        return ""
    try:
        parsed = pglast.parse_sql(render(statement, "x"))
    except Exception:  # the server will report the syntax error with its own words
        return ""
    for raw in parsed:
        stmt: Any = raw.stmt
        if type(stmt).__name__ == "IndexStmt" and stmt.concurrent and stmt.idxname:
            return str(stmt.idxname)
    return ""



def refused_in_transaction(text: str) -> bool:
    """Whether *text* is one statement that PostgreSQL refuses inside a transaction block
    (``CREATE``/``DROP INDEX CONCURRENTLY``, ``REINDEX ... CONCURRENTLY``, ``VACUUM``):
    a tool that sends a file as one query runs such a file outside a transaction."""
    try:
        parsed = pglast.parse_sql(render(text, "x"))
    except Exception:  # the server reports the syntax error, naming the migration
        return False
    if len(parsed) != 1:
        return False
    stmt: Any = parsed[0].stmt
    name = type(stmt).__name__
    if name in ("IndexStmt", "DropStmt"):
        return bool(stmt.concurrent)
    if name == "ReindexStmt":
        return any(getattr(p, "defname", None) == "concurrently" for p in stmt.params or ())
    return name == "VacuumStmt"
