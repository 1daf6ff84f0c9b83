"""The one place identifiers are quoted and DSNs are made safe to show."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import unquote

from ._exceptions import TenantmigError

SCHEMA_PLACEHOLDER = "{{schema}}"
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")


def quote_ident(name: str) -> str:
    """Quote *name* as a PostgreSQL identifier, always (``tenant_O'Brien "x"`` included)."""
    if "\x00" in name:
        raise ValueError("identifier contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def search_path(schemas: Iterable[str]) -> str:
    """The value of ``search_path`` that searches *schemas* in order, as quoted identifiers
    (``"tenant_a", "extensions"``): usable in ``SET LOCAL search_path TO ...`` and as a
    ``set_config`` value alike."""
    return ", ".join(quote_ident(s) for s in dict.fromkeys(schemas))


def text_array(values: Iterable[int | datetime | None]) -> list[str | None]:
    """Values for a ``$n::text[]`` parameter that SQL casts on (``$n::text[]::bigint[]``).

    asyncpg encodes text and oid arrays by itself, but for any other array type each new
    connection first asks the server about the type (a recursive catalog query with JIT
    switched off and on around it): three round trips and a few ms of server time on
    every connection of every run, which this avoids.
    """
    out: list[str | None] = []
    for v in values:
        if v is None:
            out.append(None)
        elif isinstance(v, datetime):
            out.append((v if v.tzinfo is not None else v.replace(tzinfo=UTC)).isoformat())
        else:
            out.append(str(int(v)))
    return out


@dataclass(frozen=True)
class StringContexts:
    """Where ``{{schema}}`` stands inside a string constant of a template, by offset."""

    literal: frozenset[int] = frozenset()
    """In ``'...'``: the name's quotes are doubled too (sessions run with
    ``standard_conforming_strings`` on, so a backslash is just a backslash)."""
    escape: frozenset[int] = frozenset()
    """In ``E'...'``: its quotes and backslashes are doubled too."""
    opaque: frozenset[int] = frozenset()
    """In a ``U&'...'`` string, or a dollar-quoted body that does not scan as SQL: names
    with ``'``, ``\\`` or ``$`` are refused there."""
    tags: frozenset[str] = frozenset()
    """The ``$tag$`` of every dollar-quoted body holding a placeholder: a name containing
    one would end that body, so it is refused. (Inside a body that scans as SQL or
    PL/pgSQL, the placeholders' own contexts are in the sets above.)"""


NO_STRINGS = StringContexts()
_UNSAFE_IN_OPAQUE = ("'", "\\", "$")


class UnsafeTenantName(TenantmigError):
    """A tenant name that the SQL cannot hold safely where it puts ``{{schema}}``."""


def render(template: str, schema: str, strings: StringContexts = NO_STRINGS) -> str:
    """Replace ``{{schema}}`` with the quoted tenant schema.

    Inside a string constant the quoted name must also stay inside the constant:
    ``nextval('{{schema}}.seq')`` for ``tenant_O'Brien`` doubles its quote (see
    :class:`StringContexts`). A name that a dollar-quoted body could not hold safely
    raises :class:`UnsafeTenantName` (that tenant fails; nothing is sent).
    """
    quoted = quote_ident(schema)
    if strings == NO_STRINGS:
        return template.replace(SCHEMA_PLACEHOLDER, quoted)
    ends = sorted(t for t in strings.tags if t in schema)
    if ends or (strings.opaque and any(c in schema for c in _UNSAFE_IN_OPAQUE)):
        where = (f"inside a body quoted with {ends[0]}, which the name contains" if ends
                 else "inside a U&'' string or a body tenantmig cannot scan, where ' \\ "
                      "or $ in the name could end it")
        raise UnsafeTenantName(
            f"tenant schema name {schema!r} cannot be put safely where this SQL puts "
            f"{{{{schema}}}}: {where}; nothing was run (rename the schema, or build the "
            "name in the body with format('%I', ...))"
        )
    literal = quoted.replace("'", "''")
    escaped = quoted.replace("\\", "\\\\").replace("'", "''")
    parts = template.split(SCHEMA_PLACEHOLDER)
    out = [parts[0]]
    offset = len(parts[0])
    for part in parts[1:]:
        if offset in strings.literal:
            out.append(literal)
        elif offset in strings.escape:
            out.append(escaped)
        else:
            out.append(quoted)
        out.append(part)
        offset += len(SCHEMA_PLACEHOLDER) + len(part)
    return "".join(out)


def placeholders(text: str) -> list[tuple[int, str]]:
    """Every ``{{...}}`` in *text* as (line number, name)."""
    found = []
    for match in _PLACEHOLDER.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append((line, match.group(1)))
    return found


_PASSWORD_KV = re.compile(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.IGNORECASE)
# A query-string password ends at the next & only: hiding up to a # too is the safe side.
_PASSWORD_PARAM = re.compile(r"([?&]password=)([^&]*)", re.IGNORECASE)


def _url_parts(dsn: str) -> tuple[str, str | None, str | None, str]:
    """(scheme, user, password, rest after the user info) of a URL DSN, split by hand.

    Not with urlsplit: a password with an unencoded ``/``, ``?``, ``#`` or ``@`` (common
    in generated passwords) moves part of it into the path, query or fragment, where a
    redaction that trusts the parse would leave it. Hosts cannot hold ``@``, so the user
    info is everything before the last one.
    """
    scheme, _, rest = dsn.partition("://")
    # The last @ that is not inside a ?password=... value (which may hold one too).
    masked = _PASSWORD_PARAM.sub(lambda m: m.group(1) + "x" * len(m.group(2)), rest)
    at = masked.rfind("@")
    if at < 0:
        return scheme, None, None, rest
    user, colon, password = rest[:at].partition(":")
    return scheme, user, password if colon else None, rest[at + 1 :]


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``, for logs and messages.

    Query-string passwords are hidden first, in the whole DSN: whichever ``@`` is then
    taken for the end of the user info (another query value may hold one too), none of
    them can come back."""
    if "://" not in dsn:
        return _PASSWORD_KV.sub(r"\1***", dsn)
    scheme, user, password, rest = _url_parts(_PASSWORD_PARAM.sub(r"\1***", dsn))
    if user is None:
        return f"{scheme}://{rest}"
    return f"{scheme}://{user}{':***' if password is not None else ''}@{rest}"


def scrub(text: str, dsns: list[str]) -> str:
    """Remove the DSNs' passwords (and the DSNs themselves) from *text*.

    A password is replaced where it stands on its own, not inside a longer word: a
    password ``tenant`` must not turn ``nosuch_tenant`` into ``nosuch_***``, which both
    garbles the message and gives the password away.
    """
    for dsn in dsns:
        if dsn:
            text = text.replace(dsn, redact_dsn(dsn))
        for secret in _passwords(dsn):
            if secret:
                text = re.sub(rf"(?<![A-Za-z0-9_]){re.escape(secret)}(?![A-Za-z0-9_])",
                              "***", text)
    return text


def _passwords(dsn: str) -> list[str]:
    found = [m.group(2).strip("'") for m in _PASSWORD_KV.finditer(dsn)]
    if "://" in dsn:
        candidates = [m.group(2) for m in _PASSWORD_PARAM.finditer(dsn)]
        _, _, password, _ = _url_parts(_PASSWORD_PARAM.sub(r"\1***", dsn))
        if password:
            candidates.append(password)
        # The user info may also end at the first @ (an @ in another query value)
        authority = dsn.partition("://")[2].split("@", 1)
        if len(authority) == 2 and ":" in authority[0]:
            candidates.append(authority[0].partition(":")[2])
        for raw in candidates:
            found += [raw, unquote(raw)]
    return sorted(set(found), key=len, reverse=True)  # longest first: no partial leftovers
