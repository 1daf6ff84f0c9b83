"""What the apply paths are handed: the run's settings, one tenant's part of the run,
what the run learned about the tenant so far, and how far a unit got."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .._sql import search_path
from ..context import MigrationContext
from ..durations import format_ms
from ..outcome import Direction
from ..source import Migration, Step
from ._connection import WorkerConnection
from ._options import ExecOptions
from ._units import step_for


def lock_timeout(options: ExecOptions, step: Step) -> str:
    """The lock timeout *step* runs under: its own, or the run's."""
    ms = step.lock_timeout_ms
    return format_ms(options.lock_timeout_ms if ms is None else ms)


@dataclass(frozen=True, slots=True)
class Run:
    """What every tenant of one run shares."""

    run_id: str
    direction: Direction
    options: ExecOptions
    prime_args: tuple[object, ...]
    """The arguments of ``batch.PRIME_SQL``: the run's settings on each connection."""
    apply_call: str
    """The CALL of the control schema's apply procedure (see ``_procedure``)."""

    @property
    def undo(self) -> bool:
        """The run goes down: undo steps, history rows removed."""
        return self.direction is Direction.DOWN

    def step(self, migration: Migration) -> Step:
        """The step of *migration* this run applies."""
        step = step_for(migration, self.direction)
        if step is None:
            raise RuntimeError(f"version {migration.version} has no undo")
        return step

    def step_or_none(self, migration: Migration) -> Step | None:
        """Like :meth:`step`, None for an undo *migration* has not."""
        return step_for(migration, self.direction)

    def lock_timeout(self, step: Step) -> str:
        """As :func:`lock_timeout`, with the run's options."""
        return lock_timeout(self.options, step)


@dataclass
class TenantFacts:
    """What this run has learned about one tenant so far, carried from one attempt and
    one unit to the next: the only state of a tenant's run that changes."""

    has_history: bool
    """As last known: whether the tenant has its history table."""
    known: bool = True
    """False after a batch ended without an answer (connection lost, cancelled): what it
    committed must be read back first."""
    unlocated: bool = False
    """An ``--atomic-tenant`` batch failed and the error did not say in which migration:
    this tenant's group goes through the apply procedure, which knows, from then on."""


@dataclass(frozen=True, slots=True)
class TenantRun:
    """One tenant's part of a run, handed to the apply paths."""

    run: Run
    tenant: str
    log: Any
    """The run's logger, bound to the run id and the tenant."""
    box: WorkerConnection
    """The worker's connection: diagnostics take it again after a failure."""
    facts: TenantFacts

    @property
    def search_path(self) -> str:
        """What the tenant's migrations run under: the tenant, then the shared schemas
        (quoted identifiers), so their unqualified names resolve inside the tenant."""
        return search_path([self.tenant, *self.run.options.shared_schemas])

    def migration_context(self, conn: Any, migration: Migration, step: Step) -> MigrationContext:
        """The ``ctx`` a Python migration gets."""
        options = self.run.options
        ms = step.lock_timeout_ms
        return MigrationContext(
            control_schema=options.control_schema,
            conn=conn,
            schema=self.tenant,
            version=migration.version,
            run_id=self.run.run_id,
            transactional=step.transactional,
            lock_timeout_ms=options.lock_timeout_ms if ms is None else ms,
            log=self.log.bind(version=migration.version),
        )


@dataclass
class Progress:
    """How far a unit got: the version being applied and the versions committed."""

    version: int
    done: list[int] = field(default_factory=list)
