"""A tenant's pending migrations grouped into units: what one call applies, and how.

A pure function of the migrations and the run's settings (no database): see
``tests/test_units.py``. Each kind of unit has its apply path, a module of this package.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from ..outcome import Direction
from ..source import Migration, Step


class UnitKind(Enum):
    """How a unit is applied."""

    BATCH = "batch"
    """Plain SQL migrations, each in its own transaction, all in one round trip (the
    batch, ``_batch``)."""
    ATOMIC_BATCH = "atomic-batch"
    """Plain SQL migrations in one transaction (``--atomic-tenant``), in one batch
    (``_batch``)."""
    EACH = "each"
    """SQL migrations each in its own transaction through the apply procedure, which
    COMMITs after each, in one call (``_each``): SQL a batch cannot hold, or any SQL
    without session state (PgBouncer in transaction mode)."""
    ATOMIC = "atomic"
    """Migrations in one transaction the client holds (``--atomic-tenant``):
    ``_transaction``."""
    SINGLE = "single"
    """One migration in a transaction of its own the client holds: Python, or SQL with
    its own statement timeout (``_transaction``)."""
    NO_TRANSACTION = "no-transaction"
    """One migration outside any transaction, statement by statement
    (``_no_transaction``)."""


# Consecutive migrations of these kinds go in one unit.
_GROUPED = frozenset({UnitKind.BATCH, UnitKind.EACH, UnitKind.ATOMIC})


@dataclass(frozen=True)
class Unit:
    """Migrations applied by one call, the way *kind* says."""

    kind: UnitKind
    migrations: tuple[Migration, ...]


def step_for(migration: Migration, direction: Direction) -> Step | None:
    """The step of *migration* that goes *direction*; None for an undo it has not."""
    return migration.up if direction is Direction.UP else migration.down


def units(
    pending: Sequence[Migration], atomic: bool, direction: Direction, session: bool
) -> list[Unit]:
    """*pending* (in order) as units; *atomic*: ``--atomic-tenant``; *session*: the
    connections keep session state (False through PgBouncer in transaction mode)."""
    groups: list[tuple[UnitKind, list[Migration]]] = []
    for m in pending:
        kind = _kind(step_for(m, direction), atomic, session)
        if kind in _GROUPED and groups and groups[-1][0] is kind:
            groups[-1][1].append(m)
        else:
            groups.append((kind, [m]))
    return [Unit(_batched(kind, group, direction) if session else kind, tuple(group))
            for kind, group in groups]


def _kind(step: Step | None, atomic: bool, session: bool) -> UnitKind:
    # A missing undo counts as transactional: applying it fails, naming the version.
    if step is not None and not step.transactional:
        return UnitKind.NO_TRANSACTION
    if atomic:
        return UnitKind.ATOMIC
    if step is None or step.sql is None or step.statement_timeout_ms is not None:
        return UnitKind.SINGLE
    return UnitKind.BATCH if session and step.batchable else UnitKind.EACH


def _batched(kind: UnitKind, group: Sequence[Migration], direction: Direction) -> UnitKind:
    """One transaction of plain SQL migrations goes as one batch too."""
    if kind is UnitKind.ATOMIC and all(
        s is not None and s.batchable and s.statement_timeout_ms is None
        for s in (step_for(m, direction) for m in group)
    ):
        return UnitKind.ATOMIC_BATCH
    return kind
