"""The engine's safety check: the tenants' and the shared migrations linted together, the
tenants' against the catalog of the targeted tenants when the engine has read it."""

from __future__ import annotations

from collections.abc import Sequence

from .lint import TENANT_ONLY, Catalog, Finding, accept_history, lint_migrations, read_catalog
from .options import Options
from .source import MigrationSet

__all__ = ["lint_all", "read_catalog"]


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
