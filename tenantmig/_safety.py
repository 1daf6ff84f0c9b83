"""The engine's safety check: the tenants' and the shared migrations linted together, the
tenants' against the catalog of the targeted tenants when the engine has read it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ._exceptions import LintError
from .lint import (
    TENANT_ONLY,
    Catalog,
    Finding,
    accept_history,
    blocking,
    lint_migrations,
    read_catalog,
)
from .options import Options
from .runs import database_refusal
from .source import MigrationSet

__all__ = ["SafetyCheck", "lint_all", "read_catalog"]


def lint_all(migrations: MigrationSet, shared: MigrationSet | None,
             shared_schemas: Sequence[str], settings: Options,
             catalog: Catalog | None = None) -> list[Finding]:
    """Every finding of the tenants' and the shared migrations (none with ``lint=False``);
    those up to ``lint_after`` accepted as history. The tenants' migrations are judged
    against their *catalog* when given (the shared schema's are not: it is no tenant)."""
    if not settings.lint:
        return []
    findings = accept_history(lint_migrations(migrations, shared_schemas=shared_schemas,
                                              catalog=catalog),
                              migrations, settings.lint_after)
    if shared is not None:
        findings += [f for f in lint_migrations(shared, shared_schemas=shared_schemas)
                     if f.rule not in TENANT_ONLY]
    return findings


class SafetyCheck:
    """The verdict on an engine's migrations: linted once without a database, and again
    with the catalog of the targeted tenants once a command knows which they are (once per
    set of tenants)."""

    def __init__(self, migrations: MigrationSet, shared: MigrationSet | None,
                 shared_schemas: Sequence[str], settings: Options) -> None:
        self._migrations = migrations
        self._shared = shared
        self._shared_schemas = shared_schemas
        self._settings = settings
        self._findings: list[Finding] | None = None
        self._linted_with: frozenset[str] | None = None
        """The tenants whose catalog :attr:`_findings` were judged with (None: none)."""

    def check(self) -> list[Finding]:
        """Raise :class:`LintError` on a finding no ``tenantmig:allow`` accepts; return the
        accepted ones, for the record (the latest verdict: with a catalog once read)."""
        if self._findings is None:
            self._findings = lint_all(self._migrations, self._shared, self._shared_schemas,
                                      self._settings)
        unsafe = blocking(self._findings)
        if unsafe:
            raise LintError(list(unsafe))
        return [f for f in self._findings if f.allowed is not None]

    async def check_with(self, pool: Any, names: Sequence[str]) -> list[Finding]:
        """:meth:`check` judged with the catalog of tenants *names* (one query)."""
        wanted = frozenset(names)
        if self._settings.lint and wanted and self._linted_with != wanted:
            catalog = await tenants_catalog(pool, sorted(wanted))
            self._findings = lint_all(self._migrations, self._shared, self._shared_schemas,
                                      self._settings, catalog)
            self._linted_with = wanted
        return self.check()


async def tenants_catalog(pool: Any, names: Sequence[str]) -> Catalog:
    """The tables and columns tenants *names* hold, read in one query."""
    with database_refusal("reading the tenants' catalog"):
        async with pool.acquire() as conn:
            return await read_catalog(conn, names)
