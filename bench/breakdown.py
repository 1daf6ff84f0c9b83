"""Where tenantmig's time goes: the raw floor, then one piece of tenantmig's work at a time.

    .venv/bin/python bench/breakdown.py [--tenants 1000] [--concurrency 8] [--repeat 3]

Every variant runs the same five DDL statements as bench/run.py on a fresh copy of the
same database, with the same concurrency, on a throwaway cluster (tmpfs by default):

* ``raw``            the floor: five autocommit statements per tenant;
* ``+history``       plus creating the tenant's history table (tenantmig does this once per
                     tenant, on its first migration ever);
* ``+bookkeeping``   plus, per migration, one transaction from the client: advisory lock,
                     statement, history row (a minimal exactly-once runner);
* ``apply-fn``       tenantmig's server-side apply procedure, one call per migration,
                     from a bare asyncpg loop (no engine);
* ``apply-fn-1call`` the same procedure, all five migrations in one call per tenant (a
                     COMMIT after each, as ``tenantmig up`` does);
* ``batch``          what ``tenantmig up`` sends per tenant: the run's settings, then one
                     multi-statement batch (session lock, history table, each migration in
                     its own transaction with its history row), from a bare asyncpg loop;
* ``tenantmig``      ``Engine.upgrade()``; ``tenantmig-atomic``: with ``atomic_tenant=True``.

Reports median wall seconds and CPU seconds of the client (this process) and of the server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import structlog
from cases import FIRST, build_template, render, tenant_names, write_migrations
from cluster import (
    Cluster,
    CpuMeter,
    checkpoint,
    cluster_tmpdir,
    drop_database,
    dsn_with_database,
    quote_ident,
)
from floor import PerTenant, fan_out
from run import median, print_table

from tenantmig import Engine, batch, control
from tenantmig.history import HISTORY_COLUMNS, HISTORY_TABLE

DB = "bench_breakdown"
STATEMENTS = [m.sql for m in FIRST]
APPLY = (
    f"CALL {control.apply_procedure('tenantmig')}($1::text, $2::bigint, $3::text, "
    "$4::text[], $5::bigint[], $6::text[], $7::text[], $8::text[], $9::boolean, $10::boolean)"
)

async def raw(conn: Any, tenant: str) -> None:
    for sql in STATEMENTS:
        await conn.execute(render(sql, tenant))


async def create_history(conn: Any, tenant: str) -> None:
    await conn.execute(f"CREATE TABLE {quote_ident(tenant)}.{HISTORY_TABLE} ({HISTORY_COLUMNS})")


async def plus_history(conn: Any, tenant: str) -> None:
    await create_history(conn, tenant)
    await raw(conn, tenant)


async def plus_bookkeeping(conn: Any, tenant: str) -> None:
    await create_history(conn, tenant)
    key = control.tenant_lock_key(tenant)
    table = f"{quote_ident(tenant)}.{HISTORY_TABLE}"
    for version, sql in enumerate(STATEMENTS, start=1):
        await conn.execute(
            f"BEGIN; SELECT pg_catalog.pg_advisory_xact_lock({key}); {render(sql, tenant)} "
            f"INSERT INTO {table} (version, description, checksum, applied_at, duration_ms, "
            f"run_id) VALUES ({version}, 'd', 'c', now(), 0, 'r'); COMMIT;"
        )


async def apply_fn(conn: Any, tenant: str) -> None:
    key = control.tenant_lock_key(tenant)
    for version, sql in enumerate(STATEMENTS, start=1):
        await conn.fetchval(
            APPLY,
            quote_ident(tenant),
            key,
            "r",
            ["5s"],
            [version],
            ["d"],
            ["c"],
            [render(sql, tenant)],
            False,
            False,
        )


async def apply_fn_one_call(conn: Any, tenant: str) -> None:
    n = len(STATEMENTS)
    await conn.fetchval(
        APPLY,
        quote_ident(tenant),
        control.tenant_lock_key(tenant),
        "r",
        ["5s"] * n,
        list(range(1, n + 1)),
        ["d"] * n,
        ["c"] * n,
        [render(s, tenant) for s in STATEMENTS],
        False,
        True,
    )


async def batch_call(conn: Any, tenant: str) -> None:
    # The pool resets settings on release, so they are set per tenant here (tenantmig
    # sets them once per connection and run).
    versions = range(1, len(STATEMENTS) + 1)
    await conn.execute(batch.PRIME_SQL, *batch.prime_args(
        "r", "5s", [(v, "d", "c", None) for v in versions]))
    work = batch.build("tenantmig", tenant, control.tenant_lock_key(tenant),
                       [batch.Item(v, render(s, tenant))
                        for v, s in zip(versions, STATEMENTS, strict=True)],
                       undo=False, has_history=False)
    await conn.execute(work.sql)


async def engine_up(dsn: str, migrations: Path, concurrency: int, atomic: bool) -> float:
    t0 = time.perf_counter()
    async with Engine(
        dsn, migrations=migrations, concurrency=concurrency, atomic_tenant=atomic
    ) as engine:
        report = await engine.upgrade()
    if not report.ok:
        raise SystemExit(f"tenantmig up failed: {report.counts()}")
    return time.perf_counter() - t0


async def prepare(admin_dsn: str) -> str:
    """A fresh copy of the template, with tenantmig's control schema (for the apply fn)."""
    await drop_database(admin_dsn, DB)
    conn = await asyncpg.connect(admin_dsn)
    try:
        await conn.execute(f"CREATE DATABASE {quote_ident(DB)} TEMPLATE bench_template")
    finally:
        await conn.close()
    dsn = dsn_with_database(admin_dsn, DB)
    conn = await asyncpg.connect(dsn)
    try:
        await control.ensure_control(conn, "tenantmig")
    finally:
        await conn.close()
    return dsn


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--tenants", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--tmpdir", help="where the throwaway cluster lives (default: /dev/shm)")
    args = p.parse_args(argv)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    names = tenant_names(args.tenants)
    c = args.concurrency
    cluster = Cluster(cluster_tmpdir(args.tmpdir))
    cluster.start()
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory() as tmp:
        stack.callback(cluster.stop)
        meter = CpuMeter(cluster.datadir)
        migrations = Path(tmp) / "migrations"
        write_migrations(migrations, FIRST)
        asyncio.run(build_template(cluster.dsn, names))

        def floor(work: PerTenant) -> Callable[[str], float]:
            return lambda dsn: asyncio.run(fan_out(dsn, names, c, work))

        def tm(atomic: bool) -> Callable[[str], float]:
            return lambda dsn: asyncio.run(engine_up(dsn, migrations, c, atomic))

        variants: list[tuple[str, Callable[[str], float]]] = [
            ("raw", floor(raw)),
            ("+history", floor(plus_history)),
            ("+bookkeeping", floor(plus_bookkeeping)),
            ("apply-fn", floor(apply_fn)),
            ("apply-fn-1call", floor(apply_fn_one_call)),
            ("batch", floor(batch_call)),
            ("tenantmig", tm(False)),
            ("tenantmig-atomic", tm(True)),
        ]
        measured: dict[str, list[tuple[float, float, float]]] = {n: [] for n, _ in variants}
        for index in range(args.repeat):
            shift = index % len(variants)
            for name, run in variants[shift:] + variants[:shift]:
                dsn = asyncio.run(prepare(cluster.dsn))
                asyncio.run(checkpoint(cluster.dsn))
                before = meter.snapshot()
                wall = run(dsn)
                meter.settle(before)
                client, server = meter.delta(before, meter.snapshot())
                measured[name].append((wall, client, server or 0.0))
            print(f"repeat {index + 1} done", file=sys.stderr)
        with contextlib.suppress(asyncpg.PostgresError):
            asyncio.run(drop_database(cluster.dsn, DB))

    base = median([m[0] for m in measured["raw"]])
    rows = [["variant", "wall s", "x raw", "client CPU s", "server CPU s"]]
    for name, runs in measured.items():
        wall = median([m[0] for m in runs])
        rows.append(
            [
                name,
                f"{wall:.2f}",
                f"{wall / base:.2f}",
                f"{median([m[1] for m in runs]):.2f}",
                f"{median([m[2] for m in runs]):.2f}",
            ]
        )
    print(f"{args.tenants} tenants, concurrency {c}, median of {args.repeat}:")
    print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
