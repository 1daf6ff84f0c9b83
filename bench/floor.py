"""The floor: plain asyncpg doing the same DDL as tenantmig, with no bookkeeping.

A pool of ``concurrency`` connections and as many workers pulling tenants from one queue.
Per tenant, with ``--floor batch`` (the tightest floor): ONE simple query holding all of
the tenant's statements, ``BEGIN; m1; COMMIT; BEGIN; m2; COMMIT; ...`` (a transaction per
migration, as tenantmig), or ``BEGIN; m1; m2; ...; COMMIT`` with ``atomic`` (as
``--atomic-tenant``). With ``--floor statement``: one round trip per statement, in
autocommit, or between a BEGIN and a COMMIT sent on their own with ``atomic``.

Also a program, for the provision case (the load runs in its own process, as the CLI does
on tenantmig's side)::

    python bench/floor.py DSN TENANTS CONCURRENCY CASE FLOOR [atomic]

prints ``started`` once its pool is open, then ``done SECONDS``.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import asyncpg
from cases import Migration, migration_set, render, tenant_names
from cluster import quote_ident

FLOORS = ("batch", "statement")

PerTenant = Callable[[Any, str], Awaitable[None]]


async def fan_out(
    dsn: str,
    names: Sequence[str],
    concurrency: int,
    work: PerTenant,
    on_open: Callable[[], None] | None = None,
) -> float:
    """Seconds for *work* on every tenant: a pool, ``concurrency`` workers, a shared queue."""
    t0 = time.perf_counter()
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    if on_open is not None:
        on_open()
    try:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for name in names:
            queue.put_nowait(name)

        async def worker() -> None:
            while not queue.empty():
                tenant = queue.get_nowait()
                async with pool.acquire() as conn:
                    await work(conn, tenant)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await pool.close()
    return time.perf_counter() - t0


def batch_sql(migrations: Sequence[Migration], tenant: str, *, atomic: bool) -> str:
    """One tenant's statements as one multi-statement simple query."""
    if atomic:
        return "BEGIN;\n" + "".join(render(m.sql, tenant) for m in migrations) + "COMMIT;"
    return "".join(f"BEGIN;\n{render(m.sql, tenant)}COMMIT;\n" for m in migrations)


def statements(migrations: Sequence[Migration], tenant: str, *, atomic: bool) -> list[str]:
    """One tenant's statements, one round trip each."""
    body = [render(m.sql, tenant) for m in migrations]
    return ["BEGIN", *body, "COMMIT"] if atomic else body


def per_tenant(migrations: Sequence[Migration], floor: str, *, atomic: bool) -> PerTenant:
    """What the floor sends to one tenant."""
    if floor == "batch":

        async def batch(conn: Any, tenant: str) -> None:
            await conn.execute(batch_sql(migrations, tenant, atomic=atomic))

        return batch

    async def each(conn: Any, tenant: str) -> None:
        for sql in statements(migrations, tenant, atomic=atomic):
            await conn.execute(sql)

    return each


async def run_floor(
    dsn: str,
    names: Sequence[str],
    concurrency: int,
    migrations: Sequence[Migration],
    floor: str,
    *,
    atomic: bool,
    on_open: Callable[[], None] | None = None,
) -> float:
    """Seconds for *migrations* on every tenant of *names*."""
    work = per_tenant(migrations, floor, atomic=atomic)
    return await fan_out(dsn, names, concurrency, work, on_open)


async def provision_raw(
    dsn: str, schema: str, migrations: Sequence[Migration], floor: str, *, atomic: bool
) -> float:
    """Seconds to create one new tenant raw, on its own connection: connect, create the
    schema, its statements (as the floor sends them), close."""
    t0 = time.perf_counter()
    conn = await asyncpg.connect(dsn)
    try:
        create = f"CREATE SCHEMA {quote_ident(schema)};\n"
        if floor == "batch":
            await conn.execute(create + batch_sql(migrations, schema, atomic=atomic))
        else:
            await conn.execute(create)
            for sql in statements(migrations, schema, atomic=atomic):
                await conn.execute(sql)
    finally:
        await conn.close()
    return time.perf_counter() - t0


def main(argv: Sequence[str]) -> int:
    dsn, tenants, concurrency, case, floor, *rest = argv
    seconds = asyncio.run(
        run_floor(
            dsn,
            tenant_names(int(tenants)),
            int(concurrency),
            migration_set(case),
            floor,
            atomic=rest == ["atomic"],
            on_open=lambda: print("started", flush=True),
        )
    )
    print(f"done {seconds:.6f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
