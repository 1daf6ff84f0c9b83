"""Discovery: which tenant schemas a command targets in one database."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ._exceptions import ConfigError, TargetError

_SYSTEM = ("public", "information_schema")


@dataclass(frozen=True)
class Targeting:
    """How the user chose tenants: explicit names, or a literal prefix, minus exclusions."""

    tenants: tuple[str, ...] | None = None
    """Explicit tenant names; None means "discover by prefix" (an empty tuple: none)."""
    prefix: str = "tenant_"
    exclude: tuple[str, ...] = field(default=())

    @property
    def explicit(self) -> bool:
        return self.tenants is not None


_COMMENT = re.compile(r"(^|\s)#.*")


def read_tenants_file(path: str | Path) -> list[str]:
    """One tenant per line; blank lines and comments ignored. A comment starts with
    ``#`` at the start of a line or after white space, so ``tenant_#1`` is a name (cut
    at its ``#`` it would have named ``tenant_``, another schema)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read tenants file {path}: {exc.strerror or exc}") from exc
    names = []
    for line in text.splitlines():
        name = _COMMENT.sub("", line).strip()
        if name:
            names.append(name)
    return names


_BY_PREFIX = """
SELECT nspname FROM pg_catalog.pg_namespace
WHERE left(nspname, length($1)) = $1 AND nspname <> ALL($2::text[])
ORDER BY nspname
"""

# Through the name index, whatever the plan (see history._WITH_HISTORY); the cast truncates
# names longer than the server's limit, so :func:`existing` keeps exact matches only.
_EXISTING = """
SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname = ANY($1::text[]::name[])
"""


def check_control_schema(control_schema: str) -> None:
    """The control schema is tenantmig's own: not a system schema, not ``public``. (One
    that is a tenant, holding a history table, is refused when the control objects would
    be created in it; discovery never takes the control schema for a tenant.)"""
    if not control_schema:
        raise ConfigError("control_schema must not be empty")
    if control_schema in _SYSTEM or control_schema.startswith("pg_"):
        raise ConfigError(f"control_schema {control_schema!r} is a schema of PostgreSQL's or "
                          "public: tenantmig needs a schema of its own (default: tenantmig)")


def listed(names: Sequence[str], limit: int = 10) -> str:
    """Names for an error message: quoted, the first *limit* of them, then how many more."""
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(repr(n) for n in names[:limit]) + more


def is_reserved(name: str, control_schema: str) -> bool:
    """System schemas, ``public`` and the control schema are never tenants."""
    return not name or name in _SYSTEM or name == control_schema or name.startswith("pg_")


async def discover(conn: Any, targeting: Targeting, *, control_schema: str) -> list[str]:
    """The tenant schemas to target, in a stable order.

    Explicit names, targeted or excluded, must all exist (else :class:`TargetError`,
    before anything runs: a misspelt exclusion would migrate the tenant meant to be left
    out); a prefix is matched literally, so ``tenantx_1`` never matches ``tenant_``.
    """
    excluded = set(targeting.exclude)
    names = list(dict.fromkeys(targeting.tenants or ()))
    bad = [n for n in names if is_reserved(n, control_schema)]
    if bad:
        raise TargetError(f"not a tenant schema: {', '.join(bad)}")
    if names or excluded:
        present = await existing(conn, [*names, *excluded])
        for what, wanted in (("tenant", names), ("excluded tenant", sorted(excluded))):
            missing = [n for n in wanted if n not in present]
            if missing:
                raise TargetError(f"{what} schema not found: {listed(missing)}")
    if targeting.tenants is not None:
        return [n for n in names if n not in excluded]
    if not targeting.prefix:
        raise ConfigError("an empty --prefix would target every schema; name tenants instead")
    skip = [control_schema, *_SYSTEM]
    rows = await conn.fetch(_BY_PREFIX, targeting.prefix, skip)
    return [r[0] for r in rows if r[0] not in excluded and not r[0].startswith("pg_")]


async def existing(conn: Any, names: Iterable[str]) -> set[str]:
    """Which of *names* are schemas in this database."""
    wanted = set(names)
    rows = await conn.fetch(_EXISTING, list(wanted))
    return {r[0] for r in rows if r[0] in wanted}


def merge_tenants(explicit: Iterable[str], files: Sequence[str | Path]) -> tuple[str, ...]:
    """Names from --tenant and every --tenants-file, first occurrence wins."""
    names = list(explicit)
    for f in files:
        names.extend(read_tenants_file(f))
    return tuple(dict.fromkeys(names))
