"""Two runners at once while backends are killed and a lock is held."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from helpers import (
    MakeMigrations,
    ledger,
    run_id_of,
    runs,
    wait_until,
)

from faults.faultkit import (
    TOUCH_ITEMS,
    BackendKiller,
    Runner,
    SlowCloseProxy,
    assert_all_at_head,
    assert_failures_exhausted_retries,
    create_item_tenants,
    lock_held,
    migration_files,
    narrow_names,
    reaped,
    run_tm,
    tenant_states,
    wait_no_backends,
)
from tenantmig import Engine


@pytest.mark.parametrize("via", ["api", "cli"])
async def test_two_runners_with_faults(
    dsn: str, tmp_path: Path, make_migrations: MakeMigrations, via: str,
) -> None:
    folder = make_migrations(migration_files(3, sleep=0.01, extra={1: TOUCH_ITEMS}))
    tenants = narrow_names(100)
    locked = "tenant_50"
    retries = 10
    await create_item_tenants(dsn, tenants)

    killer = BackendKiller(dsn, interval=0.05, duration=8.0)
    run_ids: list[str] = []
    resumes: list[str] = []
    async with SlowCloseProxy(dsn) as proxy, killer, \
            lock_held(dsn, f"{locked}.items") as holder:
        async def release_later() -> None:
            await asyncio.sleep(1.0)
            await holder.release()

        releaser = asyncio.create_task(release_later())
        if via == "api":
            started = 0

            def on_run_start(_: int) -> None:
                nonlocal started
                started += 1
                if started == 2:  # both are migrating: faults from now on
                    killer.start()

            engines = [Engine(proxy.dsn, migrations=folder, on_run_start=on_run_start,
                              concurrency=4, lock_timeout="200ms", retries=retries)
                       for _ in range(2)]
            try:
                results = await asyncio.wait_for(
                    asyncio.gather(*(e.upgrade() for e in engines), return_exceptions=True),
                    60)
                await killer.stop()
                await releaser
                raised = [r for r in results if isinstance(r, BaseException)]
                assert not raised, raised
                for report in results:
                    assert not isinstance(report, BaseException)
                    assert report.run_id is not None
                    run_ids.append(report.run_id)
            finally:
                for e in engines:
                    await e.close()
        else:
            args = ["up", "--dsn", proxy.dsn, "--concurrency", "4", "--lock-timeout", "200ms",
                    "--retries", retries]
            runners = [Runner(tmp_path, *args, name=f"runner{i}") for i in range(2)]
            with reaped(*runners):
                async def both_started() -> bool:
                    return len(await runs(dsn)) >= 2

                try:
                    await wait_until(both_started, within=20, what="both runs to start")
                    killer.start()
                    codes = [await r.wait(60) for r in runners]
                finally:
                    await killer.stop()
                    await releaser
            for runner, code in zip(runners, codes, strict=True):
                assert "Traceback" not in runner.output(), runner.output()
                assert code in (0, 1), runner.output()
                run_ids.append(run_id_of(runner.stdout))
        assert holder.released_at is not None
    assert killer.killed >= 3, killer.killed

    for rid in run_ids:
        rows = await ledger(dsn, rid)
        assert set(rows) == set(tenants)
        assert_failures_exhausted_retries(rows, retries)
        for t, r in rows.items():  # every ledger row tells the truth
            if r["status"] == "succeeded":
                assert r["version_reached"] == 3, (rid, t)
        if {r["status"] for r in rows.values()} != {"succeeded"}:
            code, out = await run_tm(tmp_path, "resume", rid, "--dsn", dsn, "--concurrency", "4")
            assert code == 0, out
            resumes.append((await runs(dsn))[-1]["run_id"])

    states = await tenant_states(dsn, tenants)
    assert_all_at_head(states, 3)
    assert {rid for st in states.values() for _, rid in st.history} <= {*run_ids, *resumes}
    await wait_no_backends(dsn)
