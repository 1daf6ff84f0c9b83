"""What happened to each tenant in a run, and the words for it.

Statuses and directions are ``StrEnum`` members, each equal to its string
(``OutcomeStatus.FAILED == "failed"``): the ledger, the reports and the JSON output,
which store and compare the strings, read them unchanged, and mypy checks the code
that uses them.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum


class OutcomeStatus(StrEnum):
    """Where one tenant stands at the end of a run."""

    PENDING = "pending"
    """Never started, or stopped before it finished: the next ``resume`` takes it."""
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    """Already at the target: nothing to do."""


class Direction(StrEnum):
    """Which way a run goes: applying migrations, or undoing them."""

    UP = "up"
    DOWN = "down"


@dataclass(frozen=True)
class TenantOutcome:
    """What happened to one tenant in a run."""

    tenant: str
    status: OutcomeStatus
    """``succeeded``, ``failed``, ``pending`` (never started) or ``skipped`` (at target)."""
    version_before: int | None
    version_reached: int | None
    target: int | None
    applied: tuple[int, ...] = ()
    failing_version: int | None = None
    sqlstate: str | None = None
    message: str | None = None
    attempts: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    seconds: float = 0.0
