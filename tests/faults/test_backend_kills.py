"""Backends of a run terminated at random: every tenant still ends at head, each version once."""

from __future__ import annotations

import asyncio

from helpers import (
    MakeMigrations,
    ledger,
    runs,
)

from faults.faultkit import (
    BackendKiller,
    SlowCloseProxy,
    assert_all_at_head,
    assert_failures_exhausted_retries,
    by_status,
    create_item_tenants,
    migration_files,
    narrow_names,
    tenant_states,
    wait_no_backends,
)
from tenantmig import Engine


async def test_random_backend_kills(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(migration_files(4, sleep=0.01))
    tenants = narrow_names(300)
    retries = 10
    await create_item_tenants(dsn, tenants)

    killer = BackendKiller(dsn, interval=0.05, duration=10.0)
    async with SlowCloseProxy(dsn) as proxy, killer, Engine(
        proxy.dsn, migrations=folder, concurrency=8, retries=retries,
        on_run_start=lambda n: killer.start(),
    ) as engine:
        try:
            report = await asyncio.wait_for(engine.upgrade(), 60)
        finally:
            await killer.stop()
        assert killer.killed >= 5, killer.killed  # the faults really happened
        assert report.run_id is not None
        rows = await ledger(dsn, report.run_id)
        assert_failures_exhausted_retries(rows, retries)
        resumed = None
        if not report.ok:
            resumed = await asyncio.wait_for(engine.resume(report.run_id), 60)
            assert resumed.ok, [(o.tenant, o.sqlstate, o.message) for o in resumed.failed]

    states = await tenant_states(dsn, tenants)
    assert_all_at_head(states, 4)
    run_ids = {report.run_id} | ({resumed.run_id} if resumed and resumed.run_id else set())
    assert {rid for st in states.values() for _, rid in st.history} <= run_ids
    assert set(rows) == set(tenants)
    statuses = by_status(rows)
    run = (await runs(dsn))[0]
    assert run["run_id"] == report.run_id and run["finished_at"] is not None
    if report.ok:
        assert statuses == {"succeeded": set(tenants)}
        assert run["status"] == "succeeded"
    else:
        assert resumed is not None and resumed.run_id is not None
        again = await ledger(dsn, resumed.run_id)
        assert set(again) == statuses.get("failed", set()) | statuses.get("pending", set())
    for t, r in rows.items():
        if r["status"] == "succeeded":
            assert r["version_reached"] == 4, dict(r)
            assert {rid for _, rid in states[t].history} == {report.run_id}, t
    await wait_no_backends(dsn)
