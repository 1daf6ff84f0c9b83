"""A table lock held by another session: retried while it is held, named when it never ends."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from pathlib import Path

import asyncpg
from helpers import (
    MakeMigrations,
    fetchval,
    ledger,
    runs,
    wait_until,
)

from faults.faultkit import (
    TOUCH_ITEMS,
    Runner,
    assert_all_at_head,
    assert_consistent,
    by_status,
    create_item_tenants,
    lock_held,
    migration_files,
    narrow_names,
    reaped,
    run_tm,
    tenant_states,
)


def first_try_attempts(rows: dict[str, asyncpg.Record], blocked: str) -> int:
    """The attempts of every tenant but *blocked*: 1, nothing retried."""
    counts = {r["attempts"] for t, r in rows.items() if t != blocked}
    assert counts == {1}, counts
    return 1


async def lock_waiters(dsn: str, table: str) -> int:
    return int(await fetchval(
        dsn, "SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = $1::regclass",
        table))


async def test_lock_released_after_a_second_is_retried(
    dsn: str, tmp_path: Path, make_migrations: MakeMigrations,
) -> None:
    make_migrations(migration_files(3, extra={1: TOUCH_ITEMS}))
    tenants = narrow_names(20)
    blocked = "tenant_00"
    table = f"{blocked}.items"
    await create_item_tenants(dsn, tenants)

    async with lock_held(dsn, table) as holder:
        runner = Runner(tmp_path, "up", "--dsn", dsn, "--concurrency", "4",
                        "--lock-timeout", "200ms", "--retries", "10")
        with reaped(runner):
            async def waiting() -> bool:
                return await lock_waiters(dsn, table) > 0

            await wait_until(waiting, within=20, what="the runner to wait on the lock",
                             proc=runner.proc)
            await asyncio.sleep(1.0)
            await holder.release()
            code = await runner.wait(30)
    assert code == 0, runner.output()
    assert holder.released_at is not None

    (run,) = await runs(dsn)
    assert run["status"] == "succeeded"
    rows = await ledger(dsn, run["run_id"])
    assert by_status(rows) == {"succeeded": set(tenants)}
    # The others never retried; the blocked tenant retried its lock timeouts.
    base = first_try_attempts(rows, blocked)
    assert rows[blocked]["attempts"] > base, (base, dict(rows[blocked]))
    assert rows[blocked]["finished_at"] > holder.released_at
    for t in tenants:
        if t != blocked:
            assert rows[t]["finished_at"] < holder.released_at - timedelta(seconds=0.25), (
                t, rows[t]["finished_at"], holder.released_at)
    assert_all_at_head(await tenant_states(dsn, tenants), 3)


async def test_lock_held_for_the_whole_run_names_the_blocker(
    dsn: str, tmp_path: Path, make_migrations: MakeMigrations,
) -> None:
    make_migrations(migration_files(3, extra={1: TOUCH_ITEMS}))
    tenants = narrow_names(20)
    blocked = "tenant_00"
    await create_item_tenants(dsn, tenants)

    async with lock_held(dsn, f"{blocked}.items") as holder:
        code, out = await run_tm(tmp_path, "up", "--dsn", dsn, "--concurrency", "4",
                             "--lock-timeout", "200ms", "--retries", "2")
        assert code == 1, out
        (run,) = await runs(dsn)
        assert run["status"] == "failed" and run["finished_at"] is not None
        rows = await ledger(dsn, run["run_id"])
        assert by_status(rows) == {"failed": {blocked},
                                   "succeeded": set(tenants) - {blocked}}
        failed = rows[blocked]
        assert failed["sqlstate"] == "55P03", dict(failed)
        assert failed["failing_version"] == 1 and failed["version_reached"] is None
        assert failed["attempts"] == 3, dict(failed)  # 1 + --retries 2
        assert f"blocked by pid {holder.pid}" in failed["message"], failed["message"]
        first_try_attempts(rows, blocked)  # nobody else waited for a lock
        for t in tenants:
            if t != blocked:
                assert rows[t]["finished_at"] < failed["finished_at"], t
                assert rows[t]["finished_at"] < run["finished_at"], t
        states = await tenant_states(dsn, tenants)
        assert_consistent(states)
        assert states[blocked].versions == []
        assert_all_at_head({t: s for t, s in states.items() if t != blocked}, 3)
        assert holder.released_at is None  # held until here

    code, out = await run_tm(tmp_path, "resume", "--dsn", dsn)
    assert code == 0, out
    resumed = (await runs(dsn))[-1]
    assert resumed["resumed_from"] == run["run_id"]
    assert set(await ledger(dsn, resumed["run_id"])) == {blocked}
    after = await tenant_states(dsn, tenants)
    assert_all_at_head(after, 3)
    assert {rid for _, rid in after[blocked].history} == {resumed["run_id"]}
    for t in tenants:
        if t != blocked:
            assert after[t].history == states[t].history, t
