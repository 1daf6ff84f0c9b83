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


def render(template: str, schema: str) -> str:
    """Replace ``{{schema}}`` with the quoted tenant schema."""
    return template.replace(SCHEMA_PLACEHOLDER, quote_ident(schema))


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
