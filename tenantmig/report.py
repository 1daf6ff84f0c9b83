"""Reports: plain typed results of a command, for the CLI and for embedding code."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

from .ledger import LedgerRow, RunRecord
from .outcome import TenantOutcome
from .plan import Plan, TenantPlan


@dataclass(frozen=True)
class Report:
    """The result of ``up``, ``down``, ``resume`` or ``provision``."""

    command: str
    run_id: str | None
    target: int | None
    outcomes: tuple[TenantOutcome, ...]
    seconds: float
    interrupted: bool = False

    def with_status(self, status: str) -> list[TenantOutcome]:
        return [o for o in self.outcomes if o.status == status]

    @property
    def succeeded(self) -> list[TenantOutcome]:
        return self.with_status("succeeded")

    @property
    def failed(self) -> list[TenantOutcome]:
        return self.with_status("failed")

    @property
    def pending(self) -> list[TenantOutcome]:
        return self.with_status("pending")

    @property
    def skipped(self) -> list[TenantOutcome]:
        return self.with_status("skipped")

    @property
    def ok(self) -> bool:
        """Every targeted tenant is at the target."""
        return not self.failed and not self.pending

    @property
    def nothing_to_do(self) -> bool:
        return all(o.status == "skipped" for o in self.outcomes)

    @property
    def applied_count(self) -> int:
        return sum(len(o.applied) for o in self.outcomes)

    def counts(self) -> dict[str, int]:
        counts: Counter[str] = Counter(o.status for o in self.outcomes)
        return {s: counts.get(s, 0) for s in ("succeeded", "failed", "pending", "skipped")}

    def slowest(self, n: int = 5) -> list[TenantOutcome]:
        worked = [o for o in self.outcomes if o.status in ("succeeded", "failed")]
        return sorted(worked, key=lambda o: o.seconds, reverse=True)[:n]


@dataclass(frozen=True)
class TenantStatus:
    """Where one tenant stands."""

    tenant: str
    current: int | None
    pending: tuple[int, ...]
    drifted: tuple[int, ...]
    unknown: tuple[int, ...]
    last_failure: LedgerRow | None = None
    baselined: int | None = None
    """The version up to which ``baseline`` recorded this tenant's history (no SQL ran)."""


@dataclass(frozen=True)
class Status:
    """Versions across tenants."""

    head: int | None
    tenants: tuple[TenantStatus, ...]
    last_run: RunRecord | None = None
    by_version: dict[int | None, int] = field(default_factory=dict)
    shared: TenantStatus | None = None
    """The shared schema, when there are shared migrations (apart from the tenants)."""
    shared_head: int | None = None

    @classmethod
    def of(cls, plan: Plan, head: int | None, last_run: RunRecord | None,
           failures: Mapping[str, LedgerRow], baselined: Mapping[str, int],
           shared_head: int | None = None) -> Status:
        """Where the tenants of *plan* stand, with what the control schema says of them:
        the latest run's *failures*, and the version each was *baselined* at."""

        def status_of(t: TenantPlan) -> TenantStatus:
            return TenantStatus(tenant=t.tenant, current=t.current,
                                pending=tuple(m.version for m in t.pending),
                                drifted=t.drifted, unknown=t.unknown,
                                last_failure=failures.get(t.tenant),
                                baselined=baselined.get(t.tenant))

        return cls(
            head=head,
            tenants=tuple(status_of(t) for t in plan.tenants),
            last_run=last_run,
            by_version=dict(Counter(t.current for t in plan.tenants)),
            shared=None if plan.shared is None else status_of(plan.shared),
            shared_head=shared_head,
        )

    @property
    def behind(self) -> list[TenantStatus]:
        return [t for t in self.tenants if t.pending]

    @property
    def drifted(self) -> list[TenantStatus]:
        return [t for t in self.tenants if t.drifted or t.unknown]

    @property
    def failed(self) -> list[TenantStatus]:
        return [t for t in self.tenants if t.last_failure is not None]

    @property
    def baselined(self) -> dict[int, int]:
        """Baseline version -> how many tenants were adopted at it."""
        return dict(Counter(t.baselined for t in self.tenants if t.baselined is not None))
