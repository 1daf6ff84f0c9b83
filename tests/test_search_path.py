"""An unqualified history runs as it is: inside each migration's transaction, on the
tenant's own connection, search_path is the tenant followed by the shared schemas."""

from __future__ import annotations

from pathlib import Path

import asyncpg
import pytest
from helpers import MakeMigrations, create_tenants, execute, fetch, fetchval, relations

import tenantmig

TENANTS = ["tenant_a", "tenant_b", "tenant_O'Brien \"x\""]

HISTORY = {
    "V1__posts.sql": """
        CREATE TABLE posts (id serial PRIMARY KEY, score int NOT NULL DEFAULT 0,
                            created timestamptz NOT NULL DEFAULT now());
        CREATE TABLE post_counts (total int NOT NULL);
        INSERT INTO post_counts VALUES (0);
    """,
    "V2__hot_rank.sql": """
        CREATE FUNCTION hot_rank(score int, created timestamptz) RETURNS numeric
        LANGUAGE sql IMMUTABLE AS $$ SELECT score / 2.0 $$;
        CREATE VIEW post_view AS SELECT id, hot_rank(score, created) AS rank FROM posts;
    """,
    "V3__count_trigger.sql": """
        CREATE FUNCTION count_posts() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            UPDATE post_counts SET total = (SELECT count(*) FROM posts);
            RETURN NULL;
        END $$;
        CREATE TRIGGER posts_counted AFTER INSERT OR DELETE ON posts
            FOR EACH STATEMENT EXECUTE FUNCTION count_posts();
    """,
    # A data migration that fires the trigger, whose body names its tables unqualified.
    "V4__seed_posts.sql": "INSERT INTO posts (score) VALUES (4), (6);\n",
    "V5__posts_score_index.sql": """
        -- tenantmig:no-transaction
        CREATE INDEX CONCURRENTLY IF NOT EXISTS posts_score_idx ON posts (score);
    """,
}


async def check_tenant(dsn: str, tenant: str) -> None:
    q = '"' + tenant.replace('"', '""') + '"'
    assert {"posts", "post_counts", "post_view", "posts_score_idx"} <= await relations(
        dsn, tenant)
    assert await fetchval(dsn, f"SELECT total FROM {q}.post_counts") == 2
    assert [r["rank"] for r in await fetch(dsn, f"SELECT rank FROM {q}.post_view "
                                                "ORDER BY id")] == [2, 3]


async def test_an_unqualified_history_lands_in_each_tenant(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(HISTORY)
    await create_tenants(dsn, TENANTS)
    async with tenantmig.Engine(dsn, migrations=folder, concurrency=2) as engine:
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    for tenant in TENANTS:
        await check_tenant(dsn, tenant)
    assert await relations(dsn, "public") == set()


@pytest.mark.parametrize("atomic", [False, True])
async def test_each_apply_path_resolves_inside_the_tenant(
    dsn: str, make_migrations: MakeMigrations, atomic: bool
) -> None:
    files = {k: v for k, v in HISTORY.items() if not k.startswith("V5")}
    files["V5__python.py"] = '''
async def up(ctx):
    await ctx.execute("INSERT INTO posts (score) VALUES (8)")
    await ctx.execute("DELETE FROM posts WHERE score = 8")
'''
    folder = make_migrations(files)
    await create_tenants(dsn, TENANTS)
    async with tenantmig.Engine(dsn, migrations=folder, atomic_tenant=atomic) as engine:
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    for tenant in TENANTS:
        q = '"' + tenant.replace('"', '""') + '"'
        assert await fetchval(dsn, f"SELECT total FROM {q}.post_counts") == 2


async def test_a_name_only_in_public_does_not_resolve(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    """public is not on a tenant's path unless declared shared: nothing reaches it."""
    await execute(dsn, "CREATE TABLE public.plans (id int)")
    folder = make_migrations({"V1__t.sql": "INSERT INTO plans VALUES (1);\n"})
    await create_tenants(dsn, ["tenant_a"])
    async with tenantmig.Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
    assert [o.sqlstate for o in report.failed] == ["42P01"]
    assert await fetchval(dsn, "SELECT count(*) FROM public.plans") == 0
    async with tenantmig.Engine(dsn, migrations=folder, shared_schemas=["public"]) as engine:
        assert (await engine.upgrade()).ok
    assert await fetchval(dsn, "SELECT count(*) FROM public.plans") == 1


async def test_the_applications_connections_keep_their_search_path(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(HISTORY)
    await create_tenants(dsn, TENANTS)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=1,
                                     server_settings={"search_path": "app, public"})
    try:
        async with tenantmig.Engine(pool=pool, migrations=folder, concurrency=1) as engine:
            report = await engine.upgrade()
        assert report.ok, [(o.tenant, o.message) for o in report.failed]
        async with pool.acquire() as conn:
            assert await conn.fetchval("SHOW search_path") == "app, public"
    finally:
        await pool.close()


def test_the_history_is_not_the_test_of_the_path(tmp_path: Path) -> None:
    """The files above never name {{schema}} and still load (lint only warns)."""
    for name, text in HISTORY.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    loaded = tenantmig.load_migrations(tmp_path)
    assert [m.version for m in loaded.migrations] == [1, 2, 3, 4, 5]
