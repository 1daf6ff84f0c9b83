"""How the executor fans out and how patient it is."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ..options import Options


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

    @classmethod
    def from_options(cls, options: Options, shared_schemas: Sequence[str]) -> ExecOptions:
        """What the executor needs of *options*; *shared_schemas* as the engine resolved
        them (the shared migrations' target included)."""
        return cls(
            concurrency=options.concurrency,
            lock_timeout_ms=options.lock_timeout_ms,
            retries=options.retries,
            atomic_tenant=options.atomic_tenant,
            max_failures=options.max_failures,
            control_schema=options.control_schema,
            shared_schemas=tuple(shared_schemas),
            retry_initial_wait=options.retry_wait[0],
            retry_max_wait=options.retry_wait[1],
            session=not options.pgbouncer,
        )
