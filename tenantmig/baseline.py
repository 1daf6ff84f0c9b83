"""Baseline: adopt tenants that already hold the schema, without running any migration.

A team moving to tenantmig has tenants created by its old tool (or by hand). ``baseline
--version V`` records versions up to V as applied in each targeted tenant, with today's
checksums, in the tenant's own history table, as Flyway's ``baseline`` does; later ``up``
runs apply only what comes after V, and a tenant created later still gets every
migration. What it refuses is decided before anything is written (:func:`disagreements`);
each tenant is then recorded in its own transaction, under the tenant's advisory lock,
after a re-read of its history.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from ._exceptions import BaselineError
from ._sql import text_array
from .control import tenant_lock_key
from .history import HISTORY_COLUMNS, table
from .outcome import OutcomeStatus, TenantOutcome
from .source import Migration


def disagreements(
    migrations: Sequence[Migration], history: Mapping[int, str] | None
) -> list[str]:
    """What in one tenant's *history* (version -> checksum; None: no history table)
    contradicts recording *migrations* as applied: a version applied with another file,
    or a version beyond the baseline already applied."""
    if not history:
        return []
    expected = {m.version: m.checksum for m in migrations}
    problems = []
    for version, checksum in sorted(history.items()):
        if version not in expected:
            problems.append(f"V{version} is already applied and comes after the baseline"
                            if not expected or version > max(expected)
                            else f"V{version} is applied but has no file")
        elif checksum != expected[version]:
            problems.append(f"V{version} was applied from a different file")
    return problems


def refuse(migrations: Sequence[Migration], version: int, tenants: Sequence[str],
           histories: Mapping[str, Mapping[int, str] | None]) -> None:
    """Raise :class:`BaselineError` naming every tenant (the first ten) whose history
    contradicts recording *migrations* as applied up to *version*."""
    problems = {t: p for t in tenants if (p := disagreements(migrations, histories[t]))}
    if problems:
        shown = "; ".join(f"{t}: {', '.join(p)}" for t, p in list(problems.items())[:10])
        more = f"; and {len(problems) - 10} more tenants" if len(problems) > 10 else ""
        raise BaselineError(
            f"baseline to {version} refused, nothing was written: {shown}{more}", problems)


_RECORD = """
INSERT INTO {table} (version, description, checksum, applied_at, duration_ms, run_id)
SELECT v, d, c, now(), 0, $4
FROM unnest($1::text[]::bigint[], $2::text[], $3::text[]) AS m(v, d, c)
WHERE NOT EXISTS (SELECT 1 FROM {table} h WHERE h.version = m.v)
RETURNING version
"""


async def record(conn: Any, tenant: str, migrations: Sequence[Migration], run_id: str,
                 target: int) -> TenantOutcome:
    """Record *migrations* as applied in *tenant*, in one transaction under its lock;
    a history that changed since it was checked (another runner) fails the tenant."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    history = table(tenant)
    async with conn.transaction():
        await conn.execute("SELECT pg_catalog.pg_advisory_xact_lock($1)",
                           tenant_lock_key(tenant))
        await conn.execute(f"CREATE TABLE IF NOT EXISTS {history} ({HISTORY_COLUMNS})")
        rows = await conn.fetch(f"SELECT version, checksum FROM {history}")
        now = {r["version"]: r["checksum"] for r in rows}
        before = max(now) if now else None
        problems = disagreements(migrations, now)
        if problems:
            return TenantOutcome(
                tenant, OutcomeStatus.FAILED, before, before, target,
                failing_version=target, message="history changed since it was checked: "
                + "; ".join(problems), attempts=1, started_at=started,
                finished_at=datetime.now(UTC), seconds=time.perf_counter() - t0)
        inserted = await conn.fetch(
            _RECORD.format(table=history),
            text_array(m.version for m in migrations),
            [m.description for m in migrations],
            [m.checksum for m in migrations],
            run_id,
        )
    return TenantOutcome(
        tenant, OutcomeStatus.SUCCEEDED, before, target, target,
        applied=tuple(sorted(r["version"] for r in inserted)), attempts=1,
        started_at=started, finished_at=datetime.now(UTC), seconds=time.perf_counter() - t0)
