"""Bad data in a few tenants fails exactly those tenants; ``--max-failures`` stops starting more."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import asyncpg
from helpers import (
    MakeMigrations,
    ledger,
    quote_ident,
    run_id_of,
    runs,
)

from faults.faultkit import (
    SCHEMA,
    assert_all_at_head,
    assert_consistent,
    by_status,
    create_item_tenants,
    migration_files,
    narrow_names,
    run_tm,
    tenant_states,
)

QTY_CHECK = (
    "-- tenantmig:allow constraint-not-valid the test wants the rows checked at once\n"
    f"ALTER TABLE {SCHEMA}.items ADD CONSTRAINT items_qty_positive CHECK (qty > 0);"
)


async def fix_bad_data(dsn: str, tenants: Sequence[str]) -> None:
    conn = await asyncpg.connect(dsn)
    try:
        for t in tenants:
            await conn.execute(f"UPDATE {quote_ident(t)}.items SET qty = 1 WHERE qty <= 0")
    finally:
        await conn.close()


async def test_bad_data_fails_exactly_those_tenants_then_resume(
    dsn: str, tmp_path: Path, make_migrations: MakeMigrations,
) -> None:
    make_migrations(migration_files(3, extra={2: QTY_CHECK}))
    tenants = narrow_names(30)
    bad = ["tenant_04", "tenant_13", "tenant_27"]
    await create_item_tenants(dsn, tenants, bad=bad)

    code, out = await run_tm(tmp_path, "up", "--dsn", dsn, "--concurrency", "4")
    assert code == 1, out
    run_id = run_id_of(out)
    (run,) = await runs(dsn)
    assert run["run_id"] == run_id and run["status"] == "failed"
    first = await ledger(dsn, run_id)
    assert set(first) == set(tenants)
    assert by_status(first) == {"failed": set(bad), "succeeded": set(tenants) - set(bad)}
    for t in bad:
        r = first[t]
        assert r["sqlstate"] == "23514", dict(r)
        assert r["failing_version"] == 2 and r["version_reached"] == 1, dict(r)
        assert "items_qty_positive" in r["message"], dict(r)
    for t in set(tenants) - set(bad):
        assert first[t]["version_reached"] == 3 and first[t]["sqlstate"] is None
    states = await tenant_states(dsn, tenants)
    assert_consistent(states)
    assert {t: st.versions for t, st in states.items() if t in bad} == {t: [1] for t in bad}
    assert_all_at_head({t: st for t, st in states.items() if t not in bad}, 3)

    await fix_bad_data(dsn, bad)
    code, out = await run_tm(tmp_path, "resume", "--dsn", dsn)
    assert code == 0, out
    resumed = (await runs(dsn))[-1]
    assert resumed["command"] == "resume" and resumed["resumed_from"] == run_id
    assert resumed["status"] == "succeeded"
    second = await ledger(dsn, resumed["run_id"])
    assert set(second) == set(bad), second
    for t in bad:
        r = second[t]
        assert r["status"] == "succeeded" and r["version_before"] == 1, dict(r)
        assert r["version_reached"] == 3, dict(r)

    after = await tenant_states(dsn, tenants)
    assert_all_at_head(after, 3)
    for t in tenants:
        if t in bad:
            assert after[t].history == [(1, run_id), (2, resumed["run_id"]),
                                        (3, resumed["run_id"])], t
        else:  # no other tenant's history got a new row
            assert after[t].history == states[t].history, t
    assert len(await runs(dsn)) == 2


async def test_max_failures_stops_starting_tenants(
    dsn: str, tmp_path: Path, make_migrations: MakeMigrations,
) -> None:
    make_migrations(migration_files(3, extra={2: QTY_CHECK}))
    tenants = narrow_names(40)
    bad = tenants[:10]  # sorted first: tenant_00 .. tenant_09
    concurrency = 3
    await create_item_tenants(dsn, tenants, bad=bad)

    code, out = await run_tm(tmp_path, "up", "--dsn", dsn, "--concurrency", concurrency,
                         "--max-failures", "2")
    assert code == 1, out
    (run,) = await runs(dsn)
    assert run["status"] == "failed"
    rows = await ledger(dsn, run["run_id"])
    assert set(rows) == set(tenants)
    statuses = by_status(rows)
    failed = statuses.get("failed", set())
    succeeded = statuses.get("succeeded", set())
    pending = statuses.get("pending", set())
    assert set(statuses) <= {"failed", "succeeded", "pending"}
    # Once the 3rd failure is in, no new tenant starts; at most concurrency - 1 were running.
    assert len(failed) >= 3, statuses
    assert len(failed) + len(succeeded) <= 2 + 1 + concurrency, statuses
    assert failed <= set(bad)
    assert pending == set(tenants) - failed - succeeded
    states = await tenant_states(dsn, tenants)
    assert_consistent(states)
    for t in failed:
        assert states[t].versions == [1] and rows[t]["sqlstate"] == "23514", t
    for t in pending:
        assert states[t].versions == [], t
        assert rows[t]["version_reached"] is None

    await fix_bad_data(dsn, bad)
    code, out = await run_tm(tmp_path, "resume", "--dsn", dsn, "--concurrency", "8")
    assert code == 0, out
    resumed = (await runs(dsn))[-1]
    assert resumed["resumed_from"] == run["run_id"] and resumed["status"] == "succeeded"
    assert set(await ledger(dsn, resumed["run_id"])) == failed | pending
    assert_all_at_head(await tenant_states(dsn, tenants), 3)
