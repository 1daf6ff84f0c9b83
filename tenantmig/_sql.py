"""The one place identifiers are quoted and DSNs are made safe to show."""

from __future__ import annotations

import re
from urllib.parse import urlsplit, urlunsplit

SCHEMA_PLACEHOLDER = "{{schema}}"
_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}")


def quote_ident(name: str) -> str:
    """Quote *name* as a PostgreSQL identifier, always (``tenant_O'Brien "x"`` included)."""
    if "\x00" in name:
        raise ValueError("identifier contains a NUL byte")
    return '"' + name.replace('"', '""') + '"'


def render(template: str, schema: str, in_strings: frozenset[int] = frozenset()) -> str:
    """Replace ``{{schema}}`` with the quoted tenant schema.

    *in_strings* holds the offsets of placeholders that stand inside a single-quoted
    string literal (``nextval('{{schema}}.seq')``): there the quote characters of the
    name are doubled as well, so ``tenant_O'Brien`` cannot end the string.
    """
    quoted = quote_ident(schema)
    if not in_strings:
        return template.replace(SCHEMA_PLACEHOLDER, quoted)
    literal = quoted.replace("'", "''")
    parts = template.split(SCHEMA_PLACEHOLDER)
    out = [parts[0]]
    offset = len(parts[0])
    for part in parts[1:]:
        out.append(literal if offset in in_strings else quoted)
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


def redact_dsn(dsn: str) -> str:
    """The DSN with any password replaced by ``***``, for logs and messages."""
    if "://" not in dsn:
        return _PASSWORD_KV.sub(r"\1***", dsn)
    try:
        parts = urlsplit(dsn)
    except ValueError:
        return "<unparseable dsn>"
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostinfo = netloc.rpartition("@")
        if ":" in userinfo:
            userinfo = userinfo.split(":", 1)[0] + ":***"
        netloc = f"{userinfo}@{hostinfo}"
    query = _PASSWORD_KV.sub(r"\1***", parts.query.replace("&", " ")).replace(" ", "&")
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def scrub(text: str, dsns: list[str]) -> str:
    """Remove any password that appears in *dsns* from *text*."""
    for dsn in dsns:
        for secret in _passwords(dsn):
            if secret:
                text = text.replace(secret, "***")
    return text


def _passwords(dsn: str) -> list[str]:
    found = [m.group(2).strip("'") for m in _PASSWORD_KV.finditer(dsn)]
    if "://" in dsn:
        try:
            password = urlsplit(dsn).password
        except ValueError:
            password = None
        if password:
            found.append(password)
    return found
