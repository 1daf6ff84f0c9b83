"""Static safety checks of migration files: no database, PostgreSQL's own parser (pglast).

Each SQL file (``V`` and ``U`` alike) is rendered with ``{{schema}}`` replaced by a quoted
identifier of the same length, parsed, and its statements walked in order. Rules catch what
locks or rewrites a busy table, what breaks running code, and what escapes the tenant's own
schema; each message says what is dangerous and the safe pattern (see NOTES-ON-SEED).
Rules that depend on earlier migrations (a CHECK validated before ``SET NOT NULL``, a column's
type before ``ALTER COLUMN TYPE``) use the facts the earlier files established
(:class:`LintState`). Python migrations are not linted.

A finding is accepted on purpose with ``-- tenantmig:allow RULE-ID reason``: on a line before
a statement it covers that statement; in the header (before the first statement) it covers the
whole file. Accepted findings keep their reason in :attr:`Finding.allowed` and do not block.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from ..source import Kind, MigrationSet, Step
from ._common import RULES, SENTINEL, Finding
from ._fix import fix_qualifiers
from ._rules import run
from ._state import ColumnType, LintState, coercion

__all__ = [
    "RULES",
    "SENTINEL",
    "ColumnType",
    "Finding",
    "LintState",
    "accept_history",
    "blocking",
    "coercion",
    "fix_qualifiers",
    "lint_migrations",
    "lint_sql",
]


def lint_sql(
    sql: str,
    *,
    path: str = "<sql>",
    transactional: bool = True,
    earlier: LintState | None = None,
    shared_schemas: Sequence[str] = (),
) -> list[Finding]:
    """Lint one migration's SQL text (with ``{{schema}}``), its allow comments included.

    *earlier* carries what previous migrations established (``LintState().after(sql)``).
    """
    findings, _ = run(sql, path, transactional, earlier, shared_schemas, None)
    return findings


def lint_migrations(
    migrations: MigrationSet, *, shared_schemas: Sequence[str] = ()
) -> list[Finding]:
    """Lint every SQL migration in version order; each undo file against the state its ``V``
    file leaves. Python migrations are skipped (their effects are unknown to the linter)."""
    state = LintState()
    findings: list[Finding] = []
    for migration in migrations.migrations:
        if migration.kind is not Kind.SQL:
            continue
        up, state = _lint_step(migration.up, state, shared_schemas)
        findings.extend(up)
        if migration.down is not None and migration.down.sql is not None:
            down, _ = _lint_step(migration.down, state, shared_schemas)
            findings.extend(down)
    return findings


def _lint_step(
    step: Step, state: LintState, shared_schemas: Sequence[str]
) -> tuple[list[Finding], LintState]:
    assert step.sql is not None
    return run(step.sql, str(step.path), step.transactional, state, shared_schemas, step.allows)


def accept_history(
    findings: Iterable[Finding], migrations: MigrationSet, lint_after: int | None
) -> list[Finding]:
    """*findings* with those in versions up to *lint_after* accepted (shown, never
    blocking): history that production already ran is judged, not refused."""
    if lint_after is None:
        return list(findings)
    old = {str(step.path) for m in migrations.migrations if m.version <= lint_after
           for step in (m.up, m.down) if step is not None}
    reason = f"history: version up to --lint-after {lint_after}"
    return [replace(f, allowed=reason) if f.path in old and f.allowed is None else f
            for f in findings]


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    """The errors no ``tenantmig:allow`` covers: ``up``, ``plan`` and ``resume`` refuse on these."""
    return [f for f in findings if f.blocking]
