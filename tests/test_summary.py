"""The summary says each kind of failure once; status says when nothing matched."""

from __future__ import annotations

from helpers import MakeMigrations, cli_env, create_tenants, tm


async def test_many_tenants_failing_the_same_way_are_one_row(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({
        "V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
        "V2__u.sql": "INSERT INTO {{schema}}.t VALUES (1);\n"
                     "INSERT INTO {{schema}}.missing VALUES (1);\n",
    })
    tenants = [f"tenant_{i:02d}" for i in range(12)]
    await create_tenants(dsn, tenants)
    r = tm("up", "--dsn", dsn, "--migrations", folder, cwd=folder.parent,
           env=cli_env(COLUMNS="200"))
    assert r.returncode == 1, r.stdout + r.stderr
    # One row for the twelve: the message with the tenant's name taken out.
    assert r.stdout.count("12 tenants: tenant_00, tenant_01, tenant_02, ...") == 1, r.stdout
    assert 'relation "<tenant>.missing" does not exist' in r.stdout
    assert "tenant_05" not in r.stdout.split("Failed tenants", 1)[1]
    ledger = tm("ledger", "--json", "--dsn", dsn, cwd=folder.parent)
    for tenant in tenants:  # the ledger still lists every tenant
        assert f'"{tenant}"' in ledger.stdout


async def test_status_with_no_matching_tenant_says_so(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations({"V1__t.sql": "CREATE TABLE {{schema}}.t (id int);\n"})
    await create_tenants(dsn, ["tenant_a"])
    r = tm("status", "--prefix", "nobody_", "--dsn", dsn, "--migrations", folder,
           cwd=folder.parent)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "No tenant schema matches" in r.stdout
    assert "All tenants at head" not in r.stdout
