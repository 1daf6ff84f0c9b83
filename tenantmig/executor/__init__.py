"""Executor: bounded fan-out over tenants, each on its own pooled connection.

Each worker holds one pooled connection and takes tenant after tenant. Per tenant, its
pending migrations are grouped into units (``_units``), and each unit goes by its path:

* transactional SQL goes in one round trip per tenant (``_batch``, see
  ``tenantmig.batch``): the tenant's session advisory lock, the history re-read under
  it, then each migration in its own transaction with its history row, or all in one
  with ``atomic_tenant``; through PgBouncer (no session) the control schema's apply
  procedure does the same per transaction (``_each``);
* transactional Python, and SQL with its own statement timeout, runs the same steps from
  the client in one transaction (``_transaction``);
* non-transactional migrations hold the tenant's session advisory lock, drop INVALID
  indexes a previous attempt left behind, run statement by statement, then record
  (``_no_transaction``).

Transient errors are retried with exponential backoff and jitter (``_attempts``, with
the policy of ``tenantmig._retry``); anything else fails that tenant and the others go
on. The rest: the fan-out and each tenant's bookkeeping (``_executor``), what the paths
are handed (``_context``), the worker's connection (``_connection``), and what a failed
tenant is told (``_diagnostics``).
"""

from .._retry import is_connection_loss, is_transient
from ..outcome import TenantOutcome
from ._executor import Executor, OutcomeCallback
from ._options import ExecOptions
from ._units import Unit, UnitKind, units

__all__ = [
    "ExecOptions",
    "Executor",
    "OutcomeCallback",
    "TenantOutcome",
    "Unit",
    "UnitKind",
    "is_connection_loss",
    "is_transient",
    "units",
]
