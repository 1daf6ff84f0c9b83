"""A tenant's SQL migrations in one batch: what a failure half-way reports, what stays out
of a batch, and that one connection serving tenant after tenant keeps the schema guard."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from conftest import MakeMigrations
from helpers import create_tenants, fetch, fetchval, quote_ident

from tenantmig import Engine, batch, load_migrations


async def versions(dsn: str, tenant: str) -> list[int]:
    rows = await fetch(dsn, f"SELECT version FROM {quote_ident(tenant)}.tenantmig_history "
                       "ORDER BY version")
    return [r["version"] for r in rows]


def test_error_position_names_the_migration() -> None:
    work = batch.build("tenantmig", "tenant_a", 42,
                       [batch.Item(1, "SELECT 1"), batch.Item(2, "SELEC 2")],
                       undo=False, has_history=False)
    offset = work.sql.index("SELEC 2") + 1  # PostgreSQL counts from 1
    assert work.version_at(str(offset)) == 2
    assert work.version_at(work.sql.index("SELECT 1") + 1) == 1
    assert work.version_at(1) is None  # the batch's own BEGIN and claim
    assert work.version_at(None) is None


def test_only_plain_transactional_sql_is_batched(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__plain.sql": "CREATE TABLE {{schema}}.a (id int);",
        "V2__commits.sql": "CREATE TABLE {{schema}}.b (id int);\nCOMMIT;",
        "V3__sets.sql": "SET lock_timeout = 0;\nCREATE TABLE {{schema}}.c (id int);",
        "V4__broken.sql": "CREATE TABLE {{schema}}.d (id int",
    })
    batchable = {m.version: m.up.batchable for m in load_migrations(folder).migrations}
    assert batchable == {1: True, 2: False, 3: False, 4: False}


BROKEN = [
    "CREATE TABLE {{schema}}.c (id int",                    # syntax: the whole batch is refused
    "INSERT INTO {{schema}}.a VALUES (1), (NULL);",          # runtime: 23502
]


def half_way(broken: str) -> dict[str, str]:
    """Four migrations, the third one *broken*."""
    return {
        "V1__a.sql": "CREATE TABLE {{schema}}.a (id int NOT NULL);",
        "V2__b.sql": "CREATE TABLE {{schema}}.b (id int);",
        "V3__broken.sql": broken,
        "V4__d.sql": "CREATE TABLE {{schema}}.d (id int);",
    }


async def ledger_failure(dsn: str) -> Any:
    """tenant_x's ledger row after V3 broke: failed at 3 with the error's SQLSTATE, and
    the tenant let go (nothing holds its lock)."""
    (row,) = await fetch(dsn, "SELECT failing_version, version_reached, sqlstate "
                         "FROM tenantmig.ledger WHERE tenant = 'tenant_x'")
    assert row["failing_version"] == 3
    assert row["sqlstate"] in ("42601", "23502")
    assert await fetchval(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
    return row


@pytest.mark.parametrize("broken", BROKEN)
async def test_failure_half_way_names_the_failing_version(
    dsn: str, make_migrations: MakeMigrations, broken: str
) -> None:
    folder = make_migrations(half_way(broken))
    await create_tenants(dsn, ["tenant_x"])
    async with Engine(dsn, migrations=folder, concurrency=1, retries=0, lint=False) as engine:
        report = await engine.upgrade()
    (outcome,) = report.outcomes
    assert outcome.status == "failed"
    assert outcome.failing_version == 3
    assert outcome.version_reached == 2
    assert await versions(dsn, "tenant_x") == [1, 2]
    assert (await ledger_failure(dsn))["version_reached"] == 2


async def test_a_migration_changing_the_session_does_not_leak_to_the_next_tenant(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    # One worker, one connection, three tenants: V1 sets search_path and lock_timeout for
    # its session; V2 names one table without {{schema}}, which must land in each tenant
    # (its transaction's search_path is the tenant), never in public.
    folder = make_migrations({
        "V1__sets.sql": "SET search_path = public;\nSET lock_timeout = 0;\n"
                        "CREATE TABLE {{schema}}.a (id int);",
        "V2__unqualified.sql": "CREATE TABLE {{schema}}.b (id int);\nCREATE TABLE c (id int);",
    })
    tenants = ["tenant_1", "tenant_2", "tenant_3"]
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, concurrency=1, retries=0, lint=False) as engine:
        report = await engine.upgrade()
    assert {o.tenant: (o.status, o.failing_version) for o in report.outcomes} == {
        t: ("succeeded", None) for t in tenants}
    assert await fetchval(dsn, "SELECT to_regclass('public.c')") is None
    for t in tenants:
        assert await versions(dsn, t) == [1, 2]
        assert await fetchval(dsn, "SELECT to_regclass($1)", f"{t}.c") is not None


async def test_a_migration_raising_our_internal_sqlstate_fails_normally(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({
        "V1__a.sql": "CREATE TABLE {{schema}}.a (id int);",
        "V2__raises.sql": "DO $$ BEGIN RAISE EXCEPTION 'mine' USING ERRCODE = 'TM001'; END $$;\n"
                          "CREATE TABLE {{schema}}.b (id int);",
    })
    await create_tenants(dsn, ["tenant_x"])
    async with Engine(dsn, migrations=folder, concurrency=1, retries=0, lint=False) as engine:
        report = await asyncio.wait_for(engine.upgrade(), 30)
    (outcome,) = report.outcomes
    assert (outcome.status, outcome.failing_version, outcome.sqlstate) == ("failed", 2, "TM001")
    assert await versions(dsn, "tenant_x") == [1]


# --- --atomic-tenant: one batch, one transaction ------------------------------------------


def test_atomic_groups_of_plain_sql_go_as_one_batch(make_migrations: MakeMigrations) -> None:
    from tenantmig.executor import UnitKind, units
    from tenantmig.outcome import Direction

    folder = make_migrations({
        "V1__a.sql": "CREATE TABLE {{schema}}.a (id int);",
        "V2__b.sql": "CREATE TABLE {{schema}}.b (id int);",
        "V3__c.py": "async def up(ctx):\n    await ctx.execute('SELECT 1')\n",
        "V4__d.sql": "-- tenantmig:no-transaction\n"
                     "CREATE INDEX CONCURRENTLY d_i ON {{schema}}.a (id);",
        "V5__e.sql": "CREATE TABLE {{schema}}.e (id int);",
    })
    pending = load_migrations(folder).migrations
    kinds = [(u.kind, [m.version for m in u.migrations])
             for u in units(pending, atomic=True, direction=Direction.UP, session=True)]
    assert kinds == [(UnitKind.ATOMIC, [1, 2, 3]), (UnitKind.NO_TRANSACTION, [4]),
                     (UnitKind.ATOMIC_BATCH, [5])]
    plain = [m for m in pending if m.version in (1, 2, 5)]
    assert [(u.kind, len(u.migrations))
            for u in units(plain, atomic=True, direction=Direction.UP, session=True)
            ] == [(UnitKind.ATOMIC_BATCH, 3)]
    # Through PgBouncer (no session) the procedure does it.
    assert [u.kind for u in units(plain, atomic=True, direction=Direction.UP, session=False)
            ] == [UnitKind.ATOMIC]


@pytest.mark.parametrize("broken", BROKEN)
async def test_atomic_failure_half_way_keeps_nothing_and_names_the_version(
    dsn: str, make_migrations: MakeMigrations, broken: str
) -> None:
    folder = make_migrations(half_way(broken))
    await create_tenants(dsn, ["tenant_x"])
    async with Engine(dsn, migrations=folder, concurrency=1, retries=0, lint=False,
                      atomic_tenant=True) as engine:
        report = await engine.upgrade()
    (outcome,) = report.outcomes
    assert (outcome.status, outcome.failing_version, outcome.applied) == ("failed", 3, ())
    assert outcome.version_reached is None
    # Not even the history table: it is created in the same transaction.
    assert await fetchval(dsn, "SELECT count(*) FROM pg_class c JOIN pg_namespace n "
                          "ON n.oid = c.relnamespace WHERE n.nspname = 'tenant_x'") == 0
    assert (await ledger_failure(dsn))["version_reached"] is None


async def test_atomic_batch_records_each_version_and_scopes_lock_timeouts(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({
        "V1__a.sql": "CREATE TABLE {{schema}}.seen (version int, lock_timeout text);\n"
                     "INSERT INTO {{schema}}.seen SELECT 1, current_setting('lock_timeout');",
        "V2__own.sql": "-- tenantmig:lock-timeout=1s\n"
                       "INSERT INTO {{schema}}.seen SELECT 2, current_setting('lock_timeout');",
        "V3__c.sql": "INSERT INTO {{schema}}.seen SELECT 3, current_setting('lock_timeout');\n"
                     "SELECT pg_sleep(0.05);",
    })
    await create_tenants(dsn, ["tenant_x", "tenant_y"])
    async with Engine(dsn, migrations=folder, concurrency=1, atomic_tenant=True,
                      lock_timeout="5s") as engine:
        report = await engine.upgrade()
    assert report.ok
    for tenant in ("tenant_x", "tenant_y"):
        seen = await fetch(dsn, f"SELECT version, lock_timeout FROM {tenant}.seen "
                           "ORDER BY version")
        assert [(r["version"], r["lock_timeout"]) for r in seen] == [
            (1, "5s"), (2, "1s"), (3, "5s")]
        rows = await fetch(dsn, f"SELECT version, duration_ms, run_id, description "
                           f"FROM {tenant}.tenantmig_history ORDER BY version")
        assert [(r["version"], r["run_id"], r["description"]) for r in rows] == [
            (1, report.run_id, "a"), (2, report.run_id, "own"), (3, report.run_id, "c")]
        assert all(0 <= r["duration_ms"] < 5000 for r in rows)
        assert rows[2]["duration_ms"] >= 50  # its own time, pg_sleep included
    # Each tenant's session settings are the run's again for the next tenant.
    assert await fetchval(dsn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'") == 0
