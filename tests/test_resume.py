"""``resume``: a later run retries exactly what the earlier one left failed or pending."""

from __future__ import annotations

import pytest
from helpers import (
    DATA_MIGRATIONS,
    ONCE_ONLY,
    MakeMigrations,
    assert_exactly_once,
    create_tenants,
    execute,
    history,
    ledger,
    migrate_with_bad_data,
    names,
    quote_ident,
    runs,
    versions,
)

from tenantmig import Engine, TargetError


async def test_resume_retries_exactly_the_failed_tenants(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(DATA_MIGRATIONS)
    tenants = names(8)
    bad = [tenants[2], tenants[5]]
    await create_tenants(dsn, tenants)
    first = await migrate_with_bad_data(dsn, folder, tenants, bad)
    assert sorted(o.tenant for o in first.failed) == bad
    good_history = {t: await history(dsn, t) for t in tenants if t not in bad}

    for t in bad:
        await execute(dsn, f"DELETE FROM {quote_ident(t)}.things WHERE n <= 0")
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.resume()
        assert report.ok, [(o.tenant, o.message) for o in report.failed]
        assert report.command == "resume"
        assert sorted(o.tenant for o in report.outcomes) == bad
        assert all(o.applied == (2, 3) for o in report.outcomes)
        # The latest run (the resume) has nothing left to do.
        again = await engine.resume()
        assert again.run_id is None and again.outcomes == ()
    for t in tenants:
        assert await versions(dsn, t) == [1, 2, 3], t
    for t, rows in good_history.items():
        assert await history(dsn, t) == rows, t
    for t in bad:
        rows = await history(dsn, t)
        assert rows is not None
        assert {r["run_id"] for r in rows if r["version"] > 1} == {report.run_id}
    resumed = [r for r in await runs(dsn) if r["run_id"] == report.run_id]
    assert resumed[0]["resumed_from"] == first.run_id
    assert resumed[0]["command"] == "resume"
    entries = await ledger(dsn, report.run_id)
    assert sorted(entries) == bad
    assert {r["status"] for r in entries.values()} == {"succeeded"}
    # The failed run's ledger is left as it was: history of what happened.
    old = await ledger(dsn, first.run_id)
    assert {t for t, r in old.items() if r["status"] == "failed"} == set(bad)


async def test_resume_without_runs(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(TargetError):
            await engine.resume()
        with pytest.raises(TargetError):
            await engine.resume("no-such-run")
    assert await history(dsn, "tenant_a") is None


async def test_resume_when_failed_tenants_were_dropped(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(DATA_MIGRATIONS)
    tenants = names(4)
    bad = [tenants[1]]
    await create_tenants(dsn, tenants)
    first = await migrate_with_bad_data(dsn, folder, tenants, bad)
    assert [o.tenant for o in first.failed] == bad
    await execute(dsn, f"DROP SCHEMA {quote_ident(bad[0])} CASCADE")
    await create_tenants(dsn, ["tenant_later"])
    async with Engine(dsn, migrations=folder) as engine:
        # Not "nothing to resume": the run did leave that tenant unfinished.
        with pytest.raises(TargetError, match="no longer exist.*" + bad[0]):
            await engine.resume()
    assert await history(dsn, "tenant_later") is None


async def test_stop_leaves_pending_and_resume_finishes(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(ONCE_ONLY)
    tenants = names(5)
    await create_tenants(dsn, tenants)
    engine = Engine(dsn, migrations=folder, concurrency=1)
    engine.on_outcome = lambda outcome: engine.request_stop()
    try:
        report = await engine.upgrade()
    finally:
        await engine.close()
    assert report.interrupted
    assert not report.ok
    assert len(report.succeeded) == 1 and len(report.pending) == 4
    done = report.succeeded[0].tenant
    (run,) = await runs(dsn)
    assert run["status"] == "interrupted"
    rows = await ledger(dsn, report.run_id)
    assert sorted(r["status"] for r in rows.values()) == ["pending"] * 4 + ["succeeded"]
    for o in report.pending:
        assert await history(dsn, o.tenant) is None
    before = await history(dsn, done)

    async with Engine(dsn, migrations=folder) as engine2:
        resumed = await engine2.resume()
    assert resumed.ok
    assert sorted(o.tenant for o in resumed.outcomes) == sorted(o.tenant for o in report.pending)
    for t in tenants:
        await assert_exactly_once(dsn, t)
    assert await history(dsn, done) == before
