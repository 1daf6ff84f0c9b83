"""``tenantmig demo``: a throwaway PostgreSQL, sample tenants, a real migration run."""

from __future__ import annotations

import argparse
import asyncio
import time

import asyncpg
from rich.console import Console

from .._cluster import ClusterError, LocalCluster
from .._exceptions import TenantmigError
from .._sql import quote_ident
from ..config import Config
from ..engine import Engine
from ..report import Report
from ..source import MigrationSet, load_migrations
from . import _render

_SAMPLE_ROWS = """
INSERT INTO {s}.customers (name, email)
SELECT 'Customer ' || g, '  User' || g || '@Example.COM ' FROM generate_series(1, 20) AS g;
INSERT INTO {s}.invoices (customer_id, amount_cents, sent_at, paid_at)
SELECT 1 + g % 20, 100 * g,
       CASE WHEN g % 3 > 0 THEN now() END, CASE WHEN g % 3 = 2 THEN now() END
FROM generate_series(1, 40) AS g;
"""


def run_demo(args: argparse.Namespace, config: Config) -> int:
    """Start a cluster, create tenants, migrate them, show status, clean up."""
    out = _render.console()
    err = _render.console(stderr=True)
    try:
        migrations = load_migrations(config.migrations)
    except TenantmigError as exc:
        raise TenantmigError(
            f"{exc}\n(the demo applies the repository's migrations/ folder: run it from the "
            "repository root or pass --migrations DIR)"
        ) from None
    out.print("Starting a throwaway PostgreSQL cluster ...")
    try:
        cluster = LocalCluster()
        cluster.start()
    except ClusterError as exc:
        raise TenantmigError(f"cannot start a local PostgreSQL: {exc}") from None
    try:
        out.print(f"PostgreSQL running at {cluster.dsn} (data in {cluster.datadir}).")
        return asyncio.run(_demo(cluster.dsn, migrations, args, out, err))
    finally:
        cluster.stop()
        out.print("Stopped the cluster and removed its data.")


async def _demo(dsn: str, migrations: MigrationSet, args: argparse.Namespace,
                out: Console, err: Console) -> int:
    # --tenants N in all, the last one a name that needs quoting
    tenants = [f"tenant_{i:04d}" for i in range(1, max(args.tenants, 1))]
    tenants.append("tenant_O'Brien \"demo\"")
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("CREATE SCHEMA tenantx_decoy")
        for start in range(0, len(tenants), 200):
            async with conn.transaction():
                for name in tenants[start:start + 200]:
                    await conn.execute(f"CREATE SCHEMA {quote_ident(name)}")
    finally:
        await conn.close()
    out.print(f"Created {len(tenants)} tenant schemas (and a decoy, tenantx_decoy, that "
              "the literal prefix tenant_ never matches).")
    first = migrations.migrations[0].version

    async with Engine(dsn, migrations=migrations, concurrency=args.concurrency) as engine:
        out.print(f"\n$ tenantmig up --target {first}")
        report = await _up(engine, err, target=first)
        _render.print_report(out, report, "")

        conn = await asyncpg.connect(dsn)
        try:
            for start in range(0, len(tenants), 100):
                batch = tenants[start:start + 100]
                await conn.execute(
                    "".join(_SAMPLE_ROWS.format(s=quote_ident(t)) for t in batch)
                )
        finally:
            await conn.close()
        out.print("Inserted 20 customers and 40 invoices into each tenant.")

        out.print("\n$ tenantmig plan")
        plan = await engine.plan()
        _render.print_plan(out, plan, "", tenants[-1], show_sql=False)
        out.print("(tenantmig plan also prints the SQL rendered for one tenant)")

        out.print("\n$ tenantmig up")
        report = await _up(engine, err)
        _render.print_report(out, report, "")
        if not report.ok:
            return 1

        out.print("\n$ tenantmig up   # again: nothing to do")
        t0 = time.perf_counter()
        again = await engine.upgrade()
        _render.print_report(out, again, "")
        out.print(f"(checked {len(again.outcomes)} tenants in {time.perf_counter() - t0:.2f}s)")

        out.print("\n$ tenantmig status")
        _render.print_status(out, await engine.status(), "")
    return 0


async def _up(engine: Engine, err: Console, target: int | None = None) -> Report:
    display = _render.ProgressDisplay(err, "up") if err.is_terminal else None
    engine.on_outcome = display.advance if display is not None else None
    engine.on_run_start = display.add_total if display is not None else None
    if display is None:
        return await engine.upgrade(target=target)
    with display:
        return await engine.upgrade(target=target)

