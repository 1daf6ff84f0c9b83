"""The linter composed: parse, walk the rule families, apply the allow comments."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace

from ..source import Allow, Kind, MigrationSet, Step
from ._allows import apply_allows, parse_allows
from ._catalog import Catalog
from ._common import Finding, Text
from ._registry import FAMILIES, RULES
from ._state import State
from ._walker import walk_statements


class LintState(State):
    """Facts established by earlier migrations, which later rules depend on.

    Built as the migrations are linted in version order; for tests, ``LintState().after(sql)``
    gives the state after a migration made of *sql*.
    """

    def after(
        self, sql: str, *, transactional: bool = True, shared_schemas: Sequence[str] = ()
    ) -> LintState:
        """A new state: this one, then the migration made of *sql* applied."""
        _, state = run(sql, "<sql>", transactional, self, shared_schemas, None)
        return state


def run(
    template: str,
    path: str,
    transactional: bool,
    earlier: LintState | None,
    shared_schemas: Sequence[str],
    allows: Sequence[Allow] | None,
) -> tuple[list[Finding], LintState]:
    """Lint one SQL file; return its findings and the state after it."""
    source = Text(template)
    state = (earlier or LintState()).copy()
    raw = walk_statements(source, transactional, state, shared_schemas, FAMILIES)
    if allows is None:
        allows = parse_allows(template)
    return apply_allows(source, path, raw, allows, RULES), state


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
    migrations: MigrationSet,
    *,
    shared_schemas: Sequence[str] = (),
    catalog: Catalog | None = None,
) -> list[Finding]:
    """Lint every SQL migration in version order; each undo file against the state its ``V``
    file leaves. Python migrations are skipped (their effects are unknown to the linter).

    With the tenants' *catalog* (:func:`read_catalog`), the tables no migration created start
    with the columns the tenants hold, the worst tenant's where they differ."""
    state = LintState() if catalog is None else catalog.seed(LintState())
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
    blocking): history that production already ran is judged, not refused, except what
    cannot run once per tenant at all (:data:`_NOT_HISTORY`)."""
    if lint_after is None:
        return list(findings)
    old = {str(step.path) for m in migrations.migrations if m.version <= lint_after
           for step in (m.up, m.down) if step is not None}
    reason = f"{HISTORY_REASON} {lint_after}"
    return [replace(f, allowed=reason)
            if f.path in old and f.allowed is None and f.rule not in _NOT_HISTORY else f
            for f in findings]


HISTORY_REASON = "history: version up to --lint-after"
"""How a finding accepted by ``--lint-after`` says so (followed by the version)."""

_NOT_HISTORY = frozenset({"other-tenant-schema", "transaction-control", "unparsable"})
"""What no history excuses: these say the file cannot work once per tenant (it names
another schema, controls the transaction the engine owns, or does not parse), not that
it was unsafe on a busy table; they block under --lint-after too."""


def blocking(findings: Iterable[Finding]) -> list[Finding]:
    """The errors no ``tenantmig:allow`` covers: ``up``, ``plan`` and ``resume`` refuse on these."""
    return [f for f in findings if f.blocking]
