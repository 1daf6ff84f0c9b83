"""Identifiers: PostgreSQL keeps only the first 63 bytes of a name (NAMEDATALEN - 1) and
says so only in a NOTICE nobody reads, so two long names that share their first 63 bytes are
the same object, and the name in the catalog is not the name in the migration."""

from __future__ import annotations

from pglast import ast
from pglast.parser import ParseError, scan

from ._common import ident
from ._walker import Family, Walk

family = Family("identifiers")

IDENTIFIER_TOO_LONG = family.rule(
    "identifier-too-long",
    "an identifier longer than 63 bytes (PostgreSQL truncates it silently)",
)

MAX_BYTES = 63
"""NAMEDATALEN - 1, as PostgreSQL is built by default."""


def identifier_value(token: str) -> str | None:
    """The name an identifier token denotes (quoted: as written; bare: lower case), or None
    for a Unicode-escaped one (``U&"..."``), which this check leaves alone."""
    if token.startswith('"') and token.endswith('"') and len(token) >= 2:
        return token[1:-1].replace('""', '"')
    if token[:2].upper() == "U&":
        return None
    return token.lower()


@family.on_every_statement
def _long_identifiers(w: Walk, node: ast.Node) -> None:
    start, end = w.stmt.start, w.stmt.end
    text = w.src.text[start:end]
    try:
        tokens = scan(text)
    except ParseError:  # pragma: no cover - the statement parsed, so it scans
        return
    seen: set[str] = set()
    for token in tokens:
        if token.name != "IDENT":
            continue
        name = identifier_value(text[token.start : token.end + 1])
        if name is None or len(name.encode()) <= MAX_BYTES or name in seen:
            continue
        seen.add(name)
        kept = name.encode()[:MAX_BYTES].decode(errors="ignore")
        w.report(
            IDENTIFIER_TOO_LONG,
            f"the identifier {ident(name)[:40]}... is {len(name.encode())} bytes long: "
            f"PostgreSQL silently keeps only the first {MAX_BYTES} ({ident(kept)}), so the "
            "catalog does not hold the name the migration says, and two names that share "
            f"their first {MAX_BYTES} bytes are one object — choose a name of at most "
            f"{MAX_BYTES} bytes",
            start + token.start,
        )
