"""How the executor fans out and how patient it is."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ExecOptions:
    """How the executor fans out and how patient it is."""

    concurrency: int = 8
    lock_timeout_ms: int = 5000
    retries: int = 3
    atomic_tenant: bool = False
    max_failures: int | None = None
    control_schema: str = "tenantmig"
    shared_schemas: tuple[str, ...] = ()
    """Searched after the tenant itself by each migration's unqualified names."""
    retry_initial_wait: float = 0.1
    retry_max_wait: float = 5.0
    reconnect_window: float = 30.0
    session: bool = True
    """Connections keep session state (False through PgBouncer in transaction mode): the
    tenant's SQL migrations then go in one batch per tenant."""
