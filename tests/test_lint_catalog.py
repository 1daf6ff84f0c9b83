"""Lint with the tenants' catalog: tables no migration created are known as the tenants hold
them (one query for the database), the worst tenant decides and is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import pytest
from helpers import MakeMigrations, cli_env, execute, fetchval, show, tm

import tenantmig
from tenantmig import Engine
from tenantmig import _safety as safety_module
from tenantmig.lint import Catalog, lint_migrations, read_catalog
from tenantmig.source import load_migrations

_ALTER = "ALTER TABLE {{schema}}.customers ALTER COLUMN email TYPE varchar(%d);\n"
WIDEN = {"V1__widen.sql": _ALTER % 255}
NARROW = {"V1__narrow.sql": _ALTER % 20}


async def _tenants(dsn: str, types: dict[str, str]) -> None:
    """Tenants made by plain SQL, as another tool would have: ``customers(email <type>)``."""
    for tenant, ctype in types.items():
        await execute(dsn, f'CREATE SCHEMA "{tenant}"')
        await execute(dsn, f'CREATE TABLE "{tenant}".customers '
                           f"(id bigint PRIMARY KEY, email {ctype} NOT NULL)")


async def _catalog(dsn: str, tenants: list[str]) -> Catalog:
    conn = await asyncpg.connect(dsn)
    try:
        return await read_catalog(conn, tenants)
    finally:
        await conn.close()


def _rules(folder: Path, catalog: Catalog | None) -> list[str]:
    return [f"{f.rule}: {f.message}" for f in
            lint_migrations(load_migrations(folder), catalog=catalog)]


async def test_a_widening_of_what_the_tenants_hold_passes_with_the_catalog(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    await _tenants(dsn, {"tenant_a": "varchar(50)", "tenant_b": "varchar(50)"})
    folder = make_migrations(WIDEN)
    catalog = await _catalog(dsn, ["tenant_a", "tenant_b"])
    assert catalog.columns[("customers", "email")].not_null == {"tenant_a", "tenant_b"}
    assert _rules(folder, catalog) == []
    without = _rules(folder, None)
    assert len(without) == 1 and without[0].startswith("alter-column-type")


async def test_a_narrowing_is_flagged_either_way(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    await _tenants(dsn, {"tenant_a": "varchar(50)"})
    folder = make_migrations(NARROW)
    with_catalog = _rules(folder, await _catalog(dsn, ["tenant_a"]))
    assert len(with_catalog) == 1
    assert "from varchar(50) is not binary-coercible" in with_catalog[0]
    assert "(in tenant_a" not in with_catalog[0]  # the tenants agree: nobody to name
    assert len(_rules(folder, None)) == 1


async def test_tenants_that_disagree_name_the_worst(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    await _tenants(dsn, {"tenant_a": "varchar(50)", "tenant_b": "integer",
                         "tenant_c": "varchar(50)"})
    folder = make_migrations(WIDEN)
    found = _rules(folder, await _catalog(dsn, ["tenant_a", "tenant_b", "tenant_c"]))
    assert len(found) == 1
    assert "from int4 (in tenant_b: int4) is not binary-coercible" in found[0], found


async def test_the_worst_tenant_is_judged_whichever_type_is_rarer(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    # The rare type (varchar(50)) widens; the common one (text -> varchar) rewrites.
    await _tenants(dsn, {"tenant_a": "text", "tenant_b": "text", "tenant_c": "varchar(50)"})
    folder = make_migrations(WIDEN)
    found = _rules(folder, await _catalog(dsn, ["tenant_a", "tenant_b", "tenant_c"]))
    assert len(found) == 1 and "from text (in tenant_a: text)" in found[0], found


async def test_the_catalog_is_only_the_targeted_tenants_and_skips_the_history(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    await _tenants(dsn, {"tenant_a": "varchar(50)", "other": "integer"})
    await execute(dsn, 'CREATE TABLE "tenant_a".tenantmig_history (version int)')
    catalog = await _catalog(dsn, ["tenant_a"])
    assert {t for t, _ in catalog.columns} == {"customers"}
    assert set(catalog.columns[("customers", "email")].types) == {"tenant_a"}


async def test_up_proves_the_widening_with_the_tenants_catalog_in_one_query(
    dsn: str, make_migrations: MakeMigrations, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _tenants(dsn, {"tenant_a": "varchar(50)", "tenant_b": "varchar(50)"})
    folder = make_migrations(WIDEN)
    reads: list[list[str]] = []

    async def counted(conn: Any, tenants: list[str]) -> Catalog:
        reads.append(list(tenants))
        return await read_catalog(conn, tenants)

    monkeypatch.setattr(safety_module, "read_catalog", counted)
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(tenantmig.LintError):
            engine.check_safety()  # without the tenants, as lint without a database
        report = await engine.upgrade()
    assert reads == [["tenant_a", "tenant_b"]]
    assert report.ok, report
    assert await fetchval(dsn, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
                               "WHERE attrelid = 'tenant_b.customers'::regclass "
                               "AND attname = 'email'") == "character varying(255)"


async def test_up_refuses_a_narrowing_and_names_the_worst_tenant(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    await _tenants(dsn, {"tenant_a": "varchar(50)", "tenant_b": "integer"})
    folder = make_migrations(WIDEN)
    async with Engine(dsn, migrations=folder) as engine:
        with pytest.raises(tenantmig.LintError) as caught:
            await engine.plan()
    assert "(in tenant_b: int4)" in str(caught.value)
    async with Engine(dsn, migrations=make_migrations(NARROW, subdir="narrow")) as engine:
        with pytest.raises(tenantmig.LintError) as caught:
            await engine.upgrade(["tenant_a"])
    assert "from varchar(50) is not binary-coercible" in str(caught.value)


async def test_cli_lint_reads_the_catalog_only_when_asked(
    dsn: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    await _tenants(dsn, {"tenant_a": "varchar(50)", "tenant_b": "varchar(50)",
                         "other_x": "integer"})
    folder = make_migrations(WIDEN)
    offline = tm("lint", "--migrations", folder, cwd=tmp_path)
    assert offline.returncode == 2 and "alter-column-type" in offline.stdout, show(offline)
    live = tm("lint", "--dsn", dsn, "--migrations", folder, cwd=tmp_path)
    assert live.returncode == 0, show(live)
    assert "0 error(s)" in live.stdout
    # A DSN from the environment alone keeps lint offline; --catalog uses it.
    env = cli_env(TENANTMIG_DSN=dsn)
    assert tm("lint", "--migrations", folder, cwd=tmp_path, env=env).returncode == 2
    assert tm("lint", "--catalog", "--migrations", folder, cwd=tmp_path,
              env=env).returncode == 0
    # The targeting of the other commands: other_x (integer) is a tenant only by --prefix.
    other = tm("lint", "--dsn", dsn, "--prefix", "other_", "--migrations", folder,
               cwd=tmp_path)
    assert other.returncode == 2 and "from int4 is not binary-coercible" in other.stdout, \
        show(other)


async def test_cli_lint_names_the_worst_tenant_and_up_runs_the_widening(
    dsn: str, make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    await _tenants(dsn, {"tenant_a": "varchar(50)", "tenant_b": "text", "tenant_c": "text"})
    folder = make_migrations(WIDEN)
    both = tm("lint", "--dsn", dsn, "--migrations", folder, cwd=tmp_path)
    assert both.returncode == 2 and "(in tenant_b: text)" in both.stdout, show(both)
    one = tm("lint", "--dsn", dsn, "--tenant", "tenant_a", "--migrations", folder,
             cwd=tmp_path)
    assert one.returncode == 0, show(one)
    up = tm("up", "--dsn", dsn, "--tenant", "tenant_a", "--migrations", folder, cwd=tmp_path)
    assert up.returncode == 0, show(up)


def test_cli_lint_catalog_without_a_database_is_a_usage_error(
    make_migrations: MakeMigrations, tmp_path: Path
) -> None:
    r = tm("lint", "--catalog", "--migrations", make_migrations(WIDEN), cwd=tmp_path)
    assert r.returncode != 0 and "lint --catalog needs a database" in r.stderr, show(r)


async def test_a_table_the_folder_creates_is_judged_as_the_folder_says(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    # The tenants ran V1 and a later NOT NULL already; V2 of this folder, judged after V1,
    # sets NOT NULL on a column V1 made nullable: the catalog does not excuse it.
    await _tenants(dsn, {"tenant_a": "varchar(50)"})
    folder = make_migrations({
        "V1__customers.sql": "CREATE TABLE {{schema}}.customers (id bigint PRIMARY KEY, "
                             "email varchar(50));\n",
        "V2__not_null.sql": "ALTER TABLE {{schema}}.customers ALTER COLUMN email "
                            "SET NOT NULL;\n",
    })
    catalog = await _catalog(dsn, ["tenant_a"])
    assert [f.split(":")[0] for f in _rules(folder, catalog)] == ["set-not-null-unvalidated"]
    assert [f.split(":")[0] for f in _rules(folder, None)] == ["set-not-null-unvalidated"]
