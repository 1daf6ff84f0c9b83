"""``up`` through the Python API: every tenant reaches head, and only the tenants asked for.

Discovery by prefix, explicit subsets, ``exclude``, ``target``, refusals of unknown tenants and
versions, a re-run with nothing to do, and which schema is the control schema.
"""

from __future__ import annotations

import pytest
from helpers import (
    ONCE_ONLY,
    MakeMigrations,
    assert_exactly_once,
    create_tenants,
    history,
    ledger,
    names,
    relations,
    runs,
    schemas,
    versions,
)

import tenantmig
from tenantmig import Engine, TargetError, load_migrations


async def test_every_tenant_reaches_head(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    tenants = names(5)
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, concurrency=3) as engine:
        report = await engine.upgrade()

    files = load_migrations(folder)
    assert report.ok and not report.nothing_to_do
    assert report.command == "up"
    assert report.target == 4
    assert report.counts() == {"succeeded": 5, "failed": 0, "pending": 0, "skipped": 0}
    assert report.applied_count == 20
    assert [o.tenant for o in report.outcomes] == tenants
    for o in report.outcomes:
        assert o.applied == (1, 2, 3, 4)
        assert o.version_before is None and o.version_reached == 4
        assert o.attempts == 1

    expected = [(m.version, m.description, m.checksum) for m in files.migrations]
    for t in tenants:
        rows = await history(dsn, t)
        assert rows is not None
        assert [(r["version"], r["description"], r["checksum"]) for r in rows] == expected
        assert {r["run_id"] for r in rows} == {report.run_id}
        await assert_exactly_once(dsn, t)
        assert await relations(dsn, t) >= {"t1", "t3", "t4", "counter", "tenantmig_history"}

    (run,) = await runs(dsn)
    assert run["run_id"] == report.run_id
    assert run["status"] == "succeeded"
    assert run["tenants"] == 5
    assert run["finished_at"] is not None
    entries = await ledger(dsn, report.run_id)
    assert set(entries) == set(tenants)
    for r in entries.values():
        assert r["status"] == "succeeded"
        assert r["version_reached"] == 4 and r["target"] == 4
        assert r["failing_version"] is None and r["sqlstate"] is None
        assert r["attempts"] == 1
        assert r["started_at"] is not None and r["finished_at"] is not None


async def test_decoy_schemas_untouched(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    decoys = ["tenantx_1", "tenant", "Tenant_upper", "xtenant_1"]
    await create_tenants(dsn, ["tenant_a", "tenant_b", *decoys])
    before_public = await relations(dsn, "public")
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert report.ok
    assert sorted(o.tenant for o in report.outcomes) == ["tenant_a", "tenant_b"]
    for decoy in [*decoys, "public"]:
        assert await history(dsn, decoy) is None, decoy
    for decoy in decoys:
        assert await relations(dsn, decoy) == set(), decoy
    assert await relations(dsn, "public") == before_public == set()
    assert await schemas(dsn) == {"tenant_a", "tenant_b", *decoys, "tenantmig"}
    assert {"runs", "ledger"} <= await relations(dsn, "tenantmig")
    assert set(await ledger(dsn, report.run_id)) == {"tenant_a", "tenant_b"}
    for t in ("tenant_a", "tenant_b"):
        await assert_exactly_once(dsn, t)


async def test_explicit_subset(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b", "tenant_c", "tenant_d"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(tenants=["tenant_c", "tenant_a"])
    assert report.ok
    assert [o.tenant for o in report.outcomes] == ["tenant_c", "tenant_a"]
    await assert_exactly_once(dsn, "tenant_a")
    await assert_exactly_once(dsn, "tenant_c")
    for t in ("tenant_b", "tenant_d"):
        assert await history(dsn, t) is None
        assert await relations(dsn, t) == set()
    assert set(await ledger(dsn, report.run_id)) == {"tenant_a", "tenant_c"}
    assert (await runs(dsn))[0]["tenants"] == 2


async def test_upgrade_refuses_a_plan_made_for_other_tenants_or_another_target(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    """upgrade(plan=...) runs the plan; tenants or a target given with it must be the ones
    the plan was made for, not silently ignored."""
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        plan = await engine.plan(["tenant_a"], target=1)
        with pytest.raises(ValueError, match="plan to 1"):
            await engine.upgrade(["tenant_a"], target=2, plan=plan)
        with pytest.raises(ValueError, match="other tenants"):
            await engine.upgrade(["tenant_b"], plan=plan)
        assert await history(dsn, "tenant_a") is None and await history(dsn, "tenant_b") is None
        report = await engine.upgrade(["tenant_a"], target=1, plan=plan)
    assert report.ok and [o.tenant for o in report.outcomes] == ["tenant_a"]
    assert await versions(dsn, "tenant_a") == [1]
    assert await history(dsn, "tenant_b") is None


async def test_exclude(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b", "tenant_c"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(exclude=["tenant_b"])
    assert report.ok
    assert [o.tenant for o in report.outcomes] == ["tenant_a", "tenant_c"]
    await assert_exactly_once(dsn, "tenant_a")
    await assert_exactly_once(dsn, "tenant_c")
    assert await relations(dsn, "tenant_b") == set()


async def test_prefix(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["acme_1", "acme_2", "acmex2", "tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(prefix="acme_")
    assert report.ok
    assert [o.tenant for o in report.outcomes] == ["acme_1", "acme_2"]
    await assert_exactly_once(dsn, "acme_1")
    await assert_exactly_once(dsn, "acme_2")
    assert await relations(dsn, "tenant_a") == set()
    assert await relations(dsn, "acmex2") == set()


async def test_unknown_tenant_is_refused_before_anything(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        first = await engine.upgrade(tenants=["tenant_a"], target=1)
        assert first.ok
        before = await runs(dsn)
        with pytest.raises(TargetError, match="tenant_nope"):
            await engine.upgrade(tenants=["tenant_b", "tenant_nope", "tenant_a"])
    assert await runs(dsn) == before
    assert len(before) == 1
    assert await versions(dsn, "tenant_a") == [1]
    assert await history(dsn, "tenant_b") is None
    assert await relations(dsn, "tenant_b") == set()


@pytest.mark.parametrize("bad", ["public", "tenantmig", "pg_catalog"])
async def test_non_tenant_schema_is_refused(
    dsn: str, make_migrations: MakeMigrations, bad: str,
) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        await engine.upgrade(target=1)
        with pytest.raises(TargetError):
            await engine.upgrade(tenants=[bad])
    assert await relations(dsn, "public") == set()
    assert len(await runs(dsn)) == 1


async def test_unknown_target_version(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(TargetError):
            await engine.upgrade(target=7)
    assert await history(dsn, "tenant_a") is None
    assert await runs(dsn) == []


async def test_target(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(target=2)
        assert report.ok and report.target == 2
        assert all(o.version_reached == 2 for o in report.outcomes)
        for t in ("tenant_a", "tenant_b"):
            assert await versions(dsn, t) == [1, 2]
        report = await engine.upgrade()
        assert report.ok and report.applied_count == 4
    for t in ("tenant_a", "tenant_b"):
        await assert_exactly_once(dsn, t)


async def test_no_op_rerun(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, names(3))
    async with Engine(dsn, migrations=folder) as engine:
        first = await engine.upgrade()
        assert first.ok and not first.nothing_to_do
        histories = {t: await history(dsn, t) for t in names(3)}
        second = await engine.upgrade()
    assert second.ok
    assert second.nothing_to_do
    assert second.run_id is None
    assert second.applied_count == 0
    assert second.counts()["skipped"] == 3
    assert len(await runs(dsn)) == 1
    for t in names(3):
        assert await history(dsn, t) == histories[t]


async def test_empty_subset_targets_nobody(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(tenants=[])
    assert report.outcomes == ()
    assert await history(dsn, "tenant_a") is None
    assert await history(dsn, "tenant_b") is None


async def test_a_tenant_is_not_made_the_control_schema(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(ONCE_ONLY)
    await create_tenants(dsn, ["tenant_a", "tenant_b", "tenant_c"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(["tenant_b"])).ok
    for schema in ("tenant_b", "tenant_c"):  # migrated, and not yet
        async with Engine(dsn, migrations=folder, control_schema=schema) as engine:
            with pytest.raises(tenantmig.ConfigError, match="is a tenant schema"):
                await engine.upgrade(["tenant_a"])
    assert "runs" not in await relations(dsn, "tenant_c")
    assert "runs" not in await relations(dsn, "tenant_b")
    assert await history(dsn, "tenant_a") is None
    # a prefix that the default control schema's name starts with is fine
    async with Engine(dsn, migrations=folder, prefix="tenant") as engine:
        assert (await engine.upgrade(["tenant_a"])).ok


def test_control_schema_must_be_tenantmigs_own(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(ONCE_ONLY)
    for name in ("public", "pg_temp", "information_schema"):
        with pytest.raises(tenantmig.ConfigError, match="control_schema"):
            Engine("postgresql://127.0.0.1:1/db", migrations=folder, control_schema=name)
    with pytest.raises(tenantmig.ConfigError, match="shorter than 1ms"):
        Engine("postgresql://127.0.0.1:1/db", migrations=folder, lock_timeout=0.0004)
