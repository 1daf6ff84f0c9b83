"""Python migrations: ``up(ctx)`` in the migration's transaction, and batched backfills."""

from __future__ import annotations

from helpers import (
    MakeMigrations,
    create_tenants,
    fetch,
    fetchval,
    quote_ident,
    versions,
)

from tenantmig import Engine


async def test_python_transactional_migration(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__settings.sql": "CREATE TABLE {{schema}}.settings (k text PRIMARY KEY, v text);\n",
        "V2__seed.py": """\
            async def up(ctx):
                assert ctx.transactional
                await ctx.execute(
                    "INSERT INTO {{schema}}.settings (k, v) VALUES ('owner', $1)", ctx.schema)
                await ctx.execute(
                    "INSERT INTO {{schema}}.settings (k, v) VALUES ('quoted', $1)", ctx.quoted)
                n = await ctx.fetchval("SELECT count(*) FROM {{schema}}.settings")
                await ctx.execute(
                    "INSERT INTO {{schema}}.settings (k, v) VALUES ('count', $1)", str(n))
            """,
    })
    tenants = ["tenant_a", "tenant_O'Brien \"x\""]
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    for t in tenants:
        rows = await fetch(dsn, f"SELECT k, v FROM {quote_ident(t)}.settings")
        assert dict(rows) == {"owner": t, "quoted": quote_ident(t), "count": "2"}
        assert await versions(dsn, t) == [1, 2]


async def test_python_failure_rolls_back_its_transaction(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        "V1__settings.sql": "CREATE TABLE {{schema}}.settings (k text PRIMARY KEY, v text);\n",
        "V2__half.py": """\
            async def up(ctx):
                await ctx.execute("INSERT INTO {{schema}}.settings VALUES ('x', 'y')")
                raise ValueError("half way")
            """,
    })
    await create_tenants(dsn, ["tenant_a"])
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade(target=1)).ok
        report = await engine.upgrade()
    (failed,) = report.failed
    assert failed.failing_version == 2
    assert failed.message and "half way" in failed.message
    assert failed.attempts == 1
    assert await fetchval(dsn, "SELECT count(*) FROM tenant_a.settings") == 0
    assert await versions(dsn, "tenant_a") == [1]


async def test_python_backfill_commits_batches(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__items.sql": """\
            CREATE TABLE {{schema}}.items (id int PRIMARY KEY, done boolean NOT NULL DEFAULT false);
            INSERT INTO {{schema}}.items (id) SELECT g FROM generate_series(1, 2500) g;
            CREATE TABLE {{schema}}.result (updated int);
            """,
        "V2__backfill.py": """\
            transactional = False

            async def up(ctx):
                updated = await ctx.backfill("items", "done = true", where="NOT done",
                                             batch_size=1000)
                await ctx.execute("INSERT INTO {{schema}}.result VALUES ($1)", updated)
            """,
    })
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    for t in ("tenant_a", "tenant_b"):
        q = quote_ident(t)
        assert await fetchval(dsn, f"SELECT count(*) FROM {q}.items WHERE done") == 2500
        assert await fetchval(dsn, f"SELECT count(*) FROM {q}.items WHERE NOT done") == 0
        assert await fetchval(dsn, f"SELECT updated FROM {q}.result") == 2500
        # Each batch committed on its own: three transactions wrote the rows.
        assert await fetchval(dsn, f"SELECT count(DISTINCT xmin::text) FROM {q}.items") == 3
        assert await versions(dsn, t) == [1, 2]
