"""A session setting one tenant's migration makes never reaches the next tenant's migration."""

from __future__ import annotations

import os

import pytest
from helpers import (
    MakeMigrations,
    create_tenants,
    execute,
    fetchval,
    quote_ident,
    versions,
)

from tenantmig import Engine

LEAKY = {
    "V1__orders.sql": """\
        CREATE TABLE {{schema}}.audit (what text NOT NULL);
        CREATE TABLE {{schema}}.orders (id int, amount int NOT NULL);
        CREATE FUNCTION {{schema}}.orders_audit() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN INSERT INTO {{schema}}.audit VALUES ('order ' || NEW.id); RETURN NEW; END $$;
        CREATE TRIGGER orders_audit AFTER INSERT ON {{schema}}.orders
            FOR EACH ROW EXECUTE FUNCTION {{schema}}.orders_audit();
        """,
    # A data fix that must not fire this tenant's audit trigger: a session-level SET.
    "V2__fix_without_audit.sql": """\
        SET session_replication_role = replica;
        INSERT INTO {{schema}}.orders VALUES (0, 0);
        """,
    "V3__seed.sql": "INSERT INTO {{schema}}.orders VALUES (1, 100), (2, 200);\n",
}


async def test_a_tenants_session_settings_do_not_reach_the_next_tenant(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations(LEAKY)
    await create_tenants(dsn, ["tenant_a", "tenant_b", "tenant_c"])
    async with Engine(dsn, migrations=folder, concurrency=1) as engine:
        assert (await engine.upgrade(["tenant_a"], target=1)).ok
        assert (await engine.upgrade(["tenant_b", "tenant_c"], target=2)).ok
        # One connection: tenant_a runs V2's SET, then tenant_b and tenant_c run V3.
        report = await engine.upgrade()
    assert report.ok, [(o.tenant, o.message) for o in report.failed]
    for t in ("tenant_b", "tenant_c"):
        audited = await fetchval(dsn, f"SELECT count(*) FROM {t}.audit WHERE what IN "
                                 "('order 1', 'order 2')")
        assert audited == 2, t


async def test_a_role_set_in_one_tenant_does_not_reach_the_next(
    dsn: str, make_migrations: MakeMigrations,
) -> None:
    role = "tm_role_" + os.urandom(3).hex()
    folder = make_migrations({
        "V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
        "V2__as_role.py": f"""\
            async def up(ctx):
                if ctx.schema == "tenant_a":
                    await ctx.execute("SET ROLE {role}")
            """,
        "V3__t3.sql": "CREATE TABLE {{schema}}.t3 (id int);\n",
    })
    await create_tenants(dsn, ["tenant_a", "tenant_b"])
    await execute(dsn, f"CREATE ROLE {role} SUPERUSER NOLOGIN")
    try:
        async with Engine(dsn, migrations=folder, concurrency=1) as engine:
            report = await engine.upgrade()
        assert report.ok, [(o.tenant, o.message) for o in report.failed]
        owner = await fetchval(dsn, "SELECT tableowner FROM pg_tables "
                               "WHERE schemaname = 'tenant_b' AND tablename = 't3'")
        assert owner == await fetchval(dsn, "SELECT current_user")
    finally:
        await execute(dsn, f"REASSIGN OWNED BY {role} TO CURRENT_USER")
        await execute(dsn, f"DROP OWNED BY {role}")
        await execute(dsn, f"DROP ROLE {role}")


@pytest.mark.parametrize("first_fails", [False, True], ids=["succeeds", "fails-later"])
async def test_a_migration_changing_client_encoding_does_not_fail_the_next_tenant(
    dsn: str, make_migrations: MakeMigrations, first_fails: bool
) -> None:
    """set_config('client_encoding', ..., false) in one tenant's migration (in a DO
    block, where tenantmig cannot see it) changes how the connection's next queries are
    encoded (the driver follows the server): the next tenant on that connection, whose
    name LATIN1 cannot spell, must still migrate."""
    folder = make_migrations({
        "V1__latin1.sql": """\
            CREATE TABLE {{schema}}.t1 (id int);
            DO $$ BEGIN
                PERFORM pg_catalog.set_config('client_encoding', 'LATIN1', false);
            END $$;
            """,
        "V2__more.sql": "CREATE TABLE {{schema}}.t2 (id int);\n",
    })
    first, second = "tenant_a", "tenant_b_日本"
    await create_tenants(dsn, [first, second])
    if first_fails:  # V1 commits, then V2 fails: the batch stops half-way
        await execute(dsn, f"CREATE TABLE {quote_ident(first)}.t2 (id int)")
    async with Engine(dsn, migrations=folder, concurrency=1, retries=0) as engine:
        report = await engine.upgrade(tenants=[first, second])
    outcomes = {o.tenant: o for o in report.outcomes}
    assert outcomes[first].status == ("failed" if first_fails else "succeeded")
    assert outcomes[second].status == "succeeded", outcomes[second].message
    assert await versions(dsn, second) == [1, 2]


@pytest.mark.parametrize("call", [
    "set_config('app.mark', 'left by tenant_a', false)",
    "pg_catalog.set_config('app.mark', 'left by tenant_a', 1 > 2)",
])
async def test_a_setting_a_migration_makes_for_the_session_does_not_reach_the_next_tenant(
    dsn: str, make_migrations: MakeMigrations, call: str
) -> None:
    """set_config(..., false) written in a migration is a SET by another name: like one,
    it lasts only the tenant's migrations, whatever the next tenant on the connection."""
    first = "tenant_a"
    folder = make_migrations({
        "V1__settings.sql": f"SELECT {call} WHERE '{{{{schema}}}}' = '\"{first}\"';\n",
        "V2__seen.sql": "CREATE TABLE {{schema}}.seen AS "
                        "SELECT current_setting('app.mark', true) AS mark;\n",
    })
    tenants = [first, "tenant_b", "tenant_c"]
    await create_tenants(dsn, tenants)
    async with Engine(dsn, migrations=folder, concurrency=1) as engine:
        report = await engine.upgrade(tenants=tenants)
    assert report.ok, [(o.tenant, o.message) for o in report.outcomes]
    seen = {t: await fetchval(dsn, f"SELECT mark FROM {quote_ident(t)}.seen") for t in tenants}
    assert seen == {first: "left by tenant_a", "tenant_b": "", "tenant_c": ""}, seen
