"""ctx.backfill survives a kill, and down/up round trips restore the same schema."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
from helpers import create_tenants, quote_ident, spawn

import tenantmig
from tenantmig._cluster import find_bindir

ROOT = Path(__file__).resolve().parent.parent

BACKFILL = {
    "V1__items.sql": """\
        CREATE TABLE {{schema}}.items (
            id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            touched integer NOT NULL DEFAULT 0
        );
        """,
    "V2__touch_every_row.py": """\
        transactional = False

        async def up(ctx):
            # Not idempotent on purpose: a batch done twice would leave touched = 2.
            await ctx.backfill("items", "touched = touched + 1", batch_size=100, pause=0.02)
        """,
}



async def test_backfill_killed_midway_resumes_without_redoing_batches(
    dsn: str, make_migrations: Any, tmp_path: Path
) -> None:
    folder = make_migrations(BACKFILL)
    await create_tenants(dsn, ["tenant_a"])
    async with tenantmig.Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(target=1)).ok
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("INSERT INTO tenant_a.items (touched) "
                           "SELECT 0 FROM generate_series(1, 3000)")
        proc = spawn("up", "--dsn", dsn, "--migrations", str(folder), cwd=tmp_path)
        # A second session sees batches committed while the backfill is still running.
        deadline = time.monotonic() + 20
        seen = 0
        while time.monotonic() < deadline:
            seen = await conn.fetchval("SELECT count(*) FROM tenant_a.items WHERE touched = 1")
            if seen >= 500:
                break
            await asyncio.sleep(0.02)
        assert 500 <= seen < 3000, seen
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=20)
        assert proc.returncode == -signal.SIGKILL

        progress = await conn.fetchrow(
            "SELECT last_key, rows, batches FROM tenantmig.backfills WHERE tenant = 'tenant_a'")
        assert progress is not None and progress["batches"] >= 5
        assert await conn.fetchval("SELECT count(*) FROM tenant_a.tenantmig_history "
                                   "WHERE version = 2") == 0
        # The killed runner's connections go away; wait until its backfill is no more.
        for _ in range(200):
            if not await conn.fetchval("SELECT count(*) FROM pg_stat_activity "
                                       "WHERE application_name = 'tenantmig'"):
                break
            await asyncio.sleep(0.05)

        done = spawn("resume", "--dsn", dsn, "--migrations", str(folder), cwd=tmp_path)
        out, err = done.communicate(timeout=60)
        assert done.returncode == 0, out + err
        counts = dict(await conn.fetch("SELECT touched, count(*) FROM tenant_a.items "
                                       "GROUP BY touched"))
        assert counts == {1: 3000}, counts
        assert await conn.fetchval("SELECT count(*) FROM tenantmig.backfills") == 0
        assert await conn.fetchval("SELECT array_agg(version ORDER BY version) "
                                   "FROM tenant_a.tenantmig_history") == [1, 2]
    finally:
        await conn.close()


def schema_dump(dsn: str, schema: str) -> str:
    """The tenant's schema as pg_dump sees it, without the history table's rows."""
    dump = subprocess.run(
        [str(find_bindir() / "pg_dump"), "--schema-only", "--no-owner",
         f"--schema={quote_ident(schema)}",
         "--exclude-table", f"{quote_ident(schema)}.tenantmig_history", dsn],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout
    # Comments and the per-dump random \restrict key differ between any two dumps.
    return "\n".join(line for line in dump.splitlines()
                     if not line.startswith(("--", "\\restrict", "\\unrestrict")))


async def test_down_round_trip_restores_the_same_schema(dsn: str) -> None:
    tenants = ["tenant_a", "tenant_O'Brien \"x\""]
    await create_tenants(dsn, tenants)
    migrations = ROOT / "migrations"
    async with tenantmig.Engine(dsn, migrations=migrations) as engine:
        assert (await engine.upgrade(target=1)).ok
        conn = await asyncpg.connect(dsn)
        try:
            for t in tenants:
                q = '"' + t.replace('"', '""') + '"'
                await conn.execute(
                    f"INSERT INTO {q}.customers (name, email) "
                    "SELECT 'c' || g, ' C' || g || '@X.org' FROM generate_series(1, 50) g;"
                    f"INSERT INTO {q}.invoices (customer_id, amount_cents, paid_at) "
                    "SELECT g, 100 * g, CASE WHEN g % 2 = 0 THEN now() END "
                    "FROM generate_series(1, 50) g"
                )
        finally:
            await conn.close()
        # V12 (an enum value) has no undo: the round trip goes up to 11 and back.
        assert (await engine.upgrade(target=11)).ok
        first = {t: schema_dump(dsn, t) for t in tenants}
        assert "invoices_customer_status_created_idx" in first["tenant_a"]
        down = await engine.downgrade(1)
        assert down.ok, [(o.tenant, o.message) for o in down.failed]
        assert {o.version_reached for o in down.outcomes} == {1}
        middle = schema_dump(dsn, "tenant_a")
        assert "email_new" not in middle and "invoice_channel" not in middle
        again = await engine.upgrade(target=11)
        assert again.ok, [(o.tenant, o.message) for o in again.failed]
        for t in tenants:
            assert schema_dump(dsn, t) == first[t], t
        missing_undo = await engine.upgrade()
        assert missing_undo.ok
        head = {t: schema_dump(dsn, t) for t in tenants}
        refused = await engine.downgrade(1)
        # Down past a version without undo: every tenant fails at 12, untouched.
        assert {(o.status, o.failing_version) for o in refused.outcomes} == {("failed", 12)}
        for t in tenants:
            assert schema_dump(dsn, t) == head[t], t


STALE = {
    "V1__items.sql": """\
        CREATE TABLE {{schema}}.items (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY);
        INSERT INTO {{schema}}.items SELECT FROM generate_series(1, 400);
        """,
    "V2__c2.sql": "ALTER TABLE {{schema}}.items ADD COLUMN c2 bigint;\n",
    "U2__c2.sql": "-- tenantmig:allow drop-column test: the undo drops V2's column\n"
                  "ALTER TABLE {{schema}}.items DROP COLUMN c2;\n",
    "V3__fill_c2.py": """\
        transactional = False

        async def up(ctx):
            await ctx.backfill("items", "c2 = id", where="c2 IS NULL", batch_size=100)
        """,
}


@contextlib.asynccontextmanager
async def at_v2_with_an_app(
    dsn: str, make_migrations: Any
) -> AsyncIterator[tuple[tenantmig.Engine, asyncpg.Connection]]:
    """tenant_a at V2 of STALE (400 rows, c2 empty), an engine that gives up on a lock
    after 300 ms with no retry, and an application's connection."""
    folder = make_migrations(STALE)
    await create_tenants(dsn, ["tenant_a"])
    app = await asyncpg.connect(dsn)
    try:
        async with tenantmig.Engine(dsn, migrations=folder, lock_timeout="300ms",
                                    retries=0) as engine:
            assert (await engine.upgrade(target=2)).ok
            yield engine, app
    finally:
        await app.close()


async def backfill_blocked_at(engine: tenantmig.Engine, app: asyncpg.Connection,
                              row: int) -> tenantmig.TenantOutcome:
    """Run up while the application holds *row*: the V3 backfill fails at its batch."""
    await app.execute(f"BEGIN; SELECT * FROM tenant_a.items WHERE id = {int(row)} FOR UPDATE")
    (failed,) = (await engine.upgrade()).failed
    await app.execute("ROLLBACK")
    assert (failed.sqlstate, failed.failing_version) == ("55P03", 3)
    return failed


async def test_backfill_progress_of_an_undone_state_is_not_resumed(
    dsn: str, make_migrations: Any
) -> None:
    """Progress saved before a migration under it was undone (the column dropped and
    added again, empty) must not make the next backfill skip the rows below it."""
    async with at_v2_with_an_app(dsn, make_migrations) as (engine, app):
        await backfill_blocked_at(engine, app, 220)  # the third batch
        assert await app.fetchval("SELECT last_key FROM tenantmig.backfills") == 200
        # The release is rolled back (U2 drops c2), then deployed again.
        assert (await engine.downgrade(target=1)).ok
        report = await engine.upgrade()
        assert report.ok, [(o.tenant, o.message) for o in report.failed]
        assert await app.fetchval("SELECT count(*) FROM tenant_a.items WHERE c2 IS NULL") == 0
        assert await app.fetchval("SELECT count(*) FROM tenantmig.backfills") == 0


async def test_progress_saved_by_an_older_release_is_trusted_then_fingerprinted(
    dsn: str, make_migrations: Any
) -> None:
    async with at_v2_with_an_app(dsn, make_migrations) as (engine, app):
        # What an older release left: progress up to 200, no fingerprint.
        await app.execute("INSERT INTO tenantmig.backfills (tenant, version, name, "
                          "last_key, rows, batches) VALUES ('tenant_a', 3, 'items', 200, "
                          "200, 2)")
        await backfill_blocked_at(engine, app, 320)
        row = await app.fetchrow("SELECT last_key, fingerprint FROM tenantmig.backfills")
        assert row["last_key"] == 300 and row["fingerprint"] is not None
        # trusted: the older release's batches were not done again
        assert await app.fetchval("SELECT count(*) FROM tenant_a.items WHERE c2 IS NULL") \
            == 300
