"""Other tools' folders read as they are: golang-migrate, dbmate and diesel (issue 14).

Loading needs no database; one ``up`` and one ``down`` per layout go through a real
PostgreSQL with :class:`tenantmig.Engine`."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from helpers import create_tenants, fetch, relations

from tenantmig import Engine, LoadError, load_migrations
from tenantmig._exceptions import Problem
from tenantmig.source import MigrationSet, checksum, sql_files

MakeMigrations = Callable[..., Path]
ALLOW = "-- tenantmig:allow drop-table the undo of this version's own table\n"


def problems_of(folder: Path) -> list[Problem]:
    with pytest.raises(LoadError) as info:
        load_migrations(folder)
    return list(info.value.problems)


def problem_for(folder: Path, name: str) -> Problem:
    """The one problem naming *name* (a file, or a diesel directory)."""
    found = [p for p in problems_of(folder) if Path(p.path).name == name]
    assert len(found) == 1, problems_of(folder)
    return found[0]


def shape(migrations: MigrationSet) -> list[tuple[int, str, bool]]:
    return [(m.version, m.description, m.transactional) for m in migrations.migrations]


# --- golang-migrate ------------------------------------------------------------------------

GOLANG = {
    "1_create_users.up.sql": "CREATE TABLE {{schema}}.users (id int PRIMARY KEY, name text);\n",
    "1_create_users.down.sql": ALLOW + "DROP TABLE {{schema}}.users;\n",
    # One statement PostgreSQL refuses in a transaction: golang-migrate runs it outside
    # one, and so do we, with or without our directive.
    "2_users_name_index.up.sql":
        "CREATE INDEX CONCURRENTLY users_name_idx ON {{schema}}.users (name);\n",
    "2_users_name_index.down.sql": """\
        -- tenantmig:no-transaction
        DROP INDEX CONCURRENTLY {{schema}}.users_name_idx;
        """,
    "10_posts.up.sql": "CREATE TABLE {{schema}}.posts (id int);\n",
    "10_posts.down.sql": ALLOW + "DROP TABLE {{schema}}.posts;\n",
}


def test_golang_migrate_folder(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({**GOLANG, "11_seed.up.sql": "INSERT INTO x VALUES (1);\n"})
    migrations = load_migrations(folder)
    # Numeric order, as golang-migrate's uint versions: 2 before 10.
    assert shape(migrations) == [(1, "create users", True), (2, "users name index", False),
                                 (10, "posts", True), (11, "seed", True)]
    users, index, posts, seed = migrations.migrations
    assert users.path.name == "1_create_users.up.sql"
    assert users.checksum == checksum((folder / "1_create_users.up.sql").read_bytes())
    assert users.down is not None and users.down.path.name == "1_create_users.down.sql"
    assert users.down.render("tenant_a") == ALLOW + 'DROP TABLE "tenant_a".users;\n'
    assert index.down is not None and not index.down.transactional
    assert index.up.concurrent_indexes == ("users_name_idx",)
    assert posts.up.sql == GOLANG["10_posts.up.sql"]
    assert seed.down is None  # an up without a down: no undo, as in golang-migrate
    assert sql_files(folder) == sorted(folder.glob("*.sql"))


def test_golang_migrate_transaction_only_for_one_refused_statement(
    make_migrations: MakeMigrations,
) -> None:
    folder = make_migrations({
        "1_two.up.sql": "CREATE TABLE {{schema}}.t (a int);\n"
                        "CREATE INDEX CONCURRENTLY t_a ON {{schema}}.t (a);\n",
        "2_vacuum.up.sql": "VACUUM {{schema}}.t;\n",
        "3_reindex.up.sql": "REINDEX INDEX CONCURRENTLY {{schema}}.t_a;\n",
        "4_plain_index.up.sql": "CREATE INDEX t_b ON {{schema}}.t (a);\n",
    })
    assert [m.transactional for m in load_migrations(folder).migrations] == [
        True, False, False, True]


def test_golang_migrate_broken(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        **GOLANG,
        "3_config.up.json": "{}",
        "4_readme.txt": "notes",
        "migrations.go": "package migrations\n",
        "01_again.up.sql": "SELECT 1;\n",
        "7_orphan.down.sql": "SELECT 1;\n",
        "8_empty.up.sql": "-- nothing yet\n",
    })
    assert "bad name" in problem_for(folder, "3_config.up.json").message
    # As golang-migrate itself: a file that is no migration's name is skipped (the Go
    # file that embeds the folder, notes), an SQL file with a bad name is not.
    assert not any(p.path.endswith(("4_readme.txt", "migrations.go"))
                   for p in problems_of(folder))
    duplicate = problem_for(folder, "1_create_users.up.sql")
    assert "duplicate version 1" in duplicate.message and "01_again.up.sql" in duplicate.message
    assert "no up file" in problem_for(folder, "7_orphan.down.sql").message
    assert "no SQL statement" in problem_for(folder, "8_empty.up.sql").message
    assert len(problems_of(folder)) == 4


def test_golang_migrate_version_too_large(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"99999999999999999999_big.up.sql": "SELECT 1;\n"})
    (problem,) = problems_of(folder)
    assert "larger than" in problem.message


# --- dbmate --------------------------------------------------------------------------------

DBMATE_USERS = """\
    -- Users and their names.
    -- migrate:up
    -- tenantmig:lock-timeout=10s
    CREATE TABLE {{schema}}.users (id int PRIMARY KEY, name text);

    -- migrate:down
    -- tenantmig:allow drop-table the undo of this version's own table
    DROP TABLE {{schema}}.users;
    """
DBMATE_INDEX = """\
    -- migrate:up transaction:false
    CREATE INDEX CONCURRENTLY users_name_idx ON {{schema}}.users (name);

    -- migrate:down transaction:false
    DROP INDEX CONCURRENTLY {{schema}}.users_name_idx;
    """
DBMATE_SEED = """\
    -- migrate:up
    INSERT INTO {{schema}}.users VALUES (1, 'first');
    -- migrate:down
    -- the row goes with the table
    """
DBMATE = {
    "20200101000000_create_users.sql": DBMATE_USERS,
    "20200102000000_users_name_index.sql": DBMATE_INDEX,
    "20200103000000_seed.sql": DBMATE_SEED,
}


def test_dbmate_folder(make_migrations: MakeMigrations) -> None:
    folder = make_migrations(DBMATE)
    migrations = load_migrations(folder)
    assert shape(migrations) == [(20200101000000, "create users", True),
                                 (20200102000000, "users name index", False),
                                 (20200103000000, "seed", True)]
    users, index, seed = migrations.migrations
    # One file is both the up and the down: the checksum is of the whole file.
    path = folder / "20200101000000_create_users.sql"
    assert users.checksum == checksum(path.read_bytes())
    assert users.up.path == path and users.down is not None and users.down.path == path
    assert users.up.lock_timeout_ms == 10_000
    assert users.up.sql is not None and users.down.sql is not None
    assert "CREATE TABLE" in users.up.sql and "DROP TABLE" not in users.up.sql
    assert "CREATE TABLE" not in users.down.sql
    # The down keeps the file's line numbers.
    assert users.down.sql.split("\n")[5] == "-- migrate:down"
    assert index.down is not None and not index.down.transactional
    assert index.up.statements and not index.up.transactional
    # An empty down section: nothing to undo.
    assert seed.down is not None and seed.down.statements == () and not seed.down.batchable
    assert sql_files(folder) == sorted(folder.glob("*.sql"))


def test_dbmate_order_is_file_name_order(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"1_a.sql": DBMATE_SEED, "10_b.sql": DBMATE_SEED,
                              "2_c.sql": DBMATE_SEED})
    problems = problems_of(folder)
    # dbmate runs 10_b.sql before 1_a.sql and 2_c.sql (it sorts file names).
    assert {Path(p.path).name for p in problems} == {"1_a.sql"}
    assert "10_b.sql" in problems[0].message and "same number of digits" in problems[0].message


@pytest.mark.parametrize(("text", "words", "line"), [
    ("CREATE TABLE {{schema}}.t (id int);\n", "no '-- migrate:up' and no '-- migrate:down'", 0),
    ("-- migrate:up\nCREATE TABLE {{schema}}.t (id int);\n", "no '-- migrate:down'", 0),
    ("-- migrate:down\nDROP TABLE {{schema}}.t;\n-- migrate:up\nCREATE TABLE {{schema}}.t ();\n",
     "before '-- migrate:up'", 1),
    ("-- header\nSET x = 1;\n-- migrate:up\nSELECT 1;\n-- migrate:down\n", "statement before", 2),
    ("-- migrate:up transaction:maybe\nSELECT 1;\n-- migrate:down\n", "unknown dbmate option", 1),
    ("-- migrate:up\nSELECT 1;\n-- migrate:down\n-- migrate:up\nSELECT 2;\n", "a second", 4),
    ("-- migrate:up\n-- nothing\n-- migrate:down\nSELECT 1;\n", "no SQL statement", 1),
])
def test_dbmate_broken_file(make_migrations: MakeMigrations, text: str, words: str,
                            line: int) -> None:
    folder = make_migrations({**DBMATE, "20200104000000_bad.sql": text})
    problem = problem_for(folder, "20200104000000_bad.sql")
    assert words in problem.message
    assert problem.line == line


def test_dbmate_broken_names(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({**DBMATE, "notes.sql": DBMATE_SEED,
                              "020200101000000_again.sql": DBMATE_SEED})
    assert "bad name" in problem_for(folder, "notes.sql").message
    duplicate = problem_for(folder, "20200101000000_create_users.sql")
    assert "duplicate version 20200101000000" in duplicate.message
    assert "020200101000000_again.sql" in duplicate.message


def test_dbmate_directive_line_is_the_files(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"1_a.sql": "-- migrate:up\nSELECT 1;\n-- migrate:down\n"
                                         "-- tenantmig:bogus\nSELECT 2;\n"})
    (problem,) = problems_of(folder)
    assert problem.line == 4 and "unknown directive" in problem.message


# --- diesel --------------------------------------------------------------------------------

DIESEL = {
    "00000000000000_diesel_initial_setup/up.sql":
        "CREATE TABLE {{schema}}.setup (id int);\n",
    "00000000000000_diesel_initial_setup/down.sql": ALLOW + "DROP TABLE {{schema}}.setup;\n",
    "2017-12-30-151035_create_users/up.sql":
        "CREATE TABLE {{schema}}.users (id int PRIMARY KEY, name text);\n",
    "2017-12-30-151035_create_users/down.sql": ALLOW + "DROP TABLE {{schema}}.users;\n",
    "2018-01-02-000000_users_name_index/up.sql":
        "CREATE INDEX CONCURRENTLY users_name_idx ON {{schema}}.users (name);\n",
    "2018-01-02-000000_users_name_index/down.sql":
        "DROP INDEX CONCURRENTLY {{schema}}.users_name_idx;\n",
    "2018-01-02-000000_users_name_index/metadata.toml": "run_in_transaction = false\n",
    "2018-02-01-000000_seed/up.sql": "INSERT INTO {{schema}}.users VALUES (1, 'first');\n",
    "2018-02-01-000000_seed/down.sql": "-- the row goes with the table\n",
    "2018-02-01-000000_seed/metadata.toml": "# defaults\n",
}


def test_diesel_folder(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({**DIESEL, ".keep": ""})
    migrations = load_migrations(folder)
    assert shape(migrations) == [(0, "diesel initial setup", True),
                                 (20171230151035, "create users", True),
                                 (20180102000000, "users name index", False),
                                 (20180201000000, "seed", True)]
    setup, users, index, seed = migrations.migrations
    up = folder / "2017-12-30-151035_create_users" / "up.sql"
    assert users.checksum == checksum(up.read_bytes()) and users.path == up
    assert users.down is not None and users.down.path.name == "down.sql"
    assert index.down is not None and not index.down.transactional
    assert seed.down is not None and seed.down.statements == ()
    assert setup.down is not None
    assert sorted(sql_files(folder)) == sorted(folder.glob("*/*.sql"))


def test_diesel_without_down_has_no_undo(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"2020-01-01-000000_x/up.sql": "SELECT 1;\n"})
    (migration,) = load_migrations(folder).migrations
    assert migration.down is None


def test_diesel_broken(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        **DIESEL,
        "2019-01-01-000000_no_up/down.sql": "SELECT 1;\n",
        "20171230151035_same_version/up.sql": "SELECT 1;\n",
        "latest_x/up.sql": "SELECT 1;\n",
        "2019-02-01-000000_meta/up.sql": "SELECT 1;\n",
        "2019-02-01-000000_meta/metadata.toml": "run_in_transaction = 'no'\n",
        "2019-03-01-000000_toml/up.sql": "SELECT 1;\n",
        "2019-03-01-000000_toml/metadata.toml": "run_in_transaction = \n",
        "schema.rs": "// generated\n",
    })
    assert "no up.sql" in problem_for(folder, "2019-01-01-000000_no_up").message
    duplicate = problem_for(folder, "up.sql")  # the later of the two with one version
    assert "duplicate version 20171230151035" in duplicate.message
    assert "bad name" in problem_for(folder, "latest_x").message
    metadata = [p for p in problems_of(folder) if Path(p.path).name == "metadata.toml"]
    assert sorted(p.message.split(":")[0] for p in metadata) == [
        "not valid TOML", "run_in_transaction must be true or false"]
    assert "bad name" in problem_for(folder, "schema.rs").message
    assert len(problems_of(folder)) == 6


def test_diesel_versions_of_different_lengths(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"1_a/up.sql": "SELECT 1;\n", "10_b/up.sql": "SELECT 1;\n",
                              "2_c/up.sql": "SELECT 1;\n"})
    (problem,) = problems_of(folder)
    # diesel orders versions as text: "10" before "2".
    assert problem.path.endswith("2_c/up.sql")
    assert "10_b before 2_c" in problem.message


# --- one folder, one layout -------------------------------------------------------------------


def test_mixed_layouts_name_the_odd_files(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({**GOLANG, "V3__ours.sql": "SELECT 1;\n",
                              "20200101000000_dbmate.sql": DBMATE_SEED,
                              "2018-01-01-000000_diesel/up.sql": "SELECT 1;\n"})
    problems = problems_of(folder)
    assert sorted(Path(p.path).name for p in problems) == [
        "2018-01-01-000000_diesel", "20200101000000_dbmate.sql", "V3__ours.sql"]
    for problem in problems:
        assert "folder of golang-migrate migrations" in problem.message
        assert "one folder holds one layout" in problem.message


def test_mixed_folder_is_exit_2_on_the_command_line(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({**GOLANG, "V3__ours.sql": "SELECT 1;\n"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("TENANTMIG_")}
    result = subprocess.run([sys.executable, "-m", "tenantmig", "lint", "--migrations",
                             str(folder)], cwd=folder.parent, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2, result
    # lint reports load problems beside its findings, on stdout, as rule `load`
    assert "V3__ours.sql:0 load: " in result.stdout, result
    assert "one folder holds one layout" in result.stdout, result
    assert "Traceback" not in result.stderr


def test_our_layout_keeps_its_messages_among_other_names(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"V1__a.sql": "SELECT 1;\n", "V2__b.sql": "SELECT 2;\n",
                              "3_c.up.sql": "SELECT 3;\n", "notes/readme.txt": "x"})
    (problem,) = problems_of(folder)
    assert Path(problem.path).name == "3_c.up.sql"
    assert problem.message.startswith("bad file name")


def test_our_layout_unchanged(make_migrations: MakeMigrations) -> None:
    folder = make_migrations({"V1__create_users.sql": "CREATE TABLE {{schema}}.u (id int);\n",
                              "U1__create_users.sql": "DROP TABLE {{schema}}.u;\n",
                              "V10__later.sql": "SELECT 1;\n", "docs/notes.md": "x"})
    migrations = load_migrations(folder)
    assert shape(migrations) == [(1, "create users", True), (10, "later", True)]
    first = migrations.migrations[0]
    assert first.checksum == checksum((folder / "V1__create_users.sql").read_bytes())


# --- through PostgreSQL ----------------------------------------------------------------------

TENANTS = ["tenant_a", "tenant_b"]


async def history(dsn: str, tenant: str) -> dict[int, str]:
    rows = await fetch(dsn, f'SELECT version, checksum FROM "{tenant}".tenantmig_history')
    return {r["version"]: r["checksum"] for r in rows}


async def indexes(dsn: str, tenant: str) -> set[str]:
    rows = await fetch(dsn, "SELECT indexname FROM pg_indexes WHERE schemaname = $1", tenant)
    return {r["indexname"] for r in rows}


async def up_then_down(dsn: str, folder: Path, first: int) -> MigrationSet:
    """Up to head on every tenant, then down to *first*; returns the loaded set."""
    migrations = load_migrations(folder)
    await create_tenants(dsn, TENANTS)
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade()
        assert report.ok, report
        for tenant in TENANTS:
            assert await history(dsn, tenant) == {
                m.version: m.checksum for m in migrations.migrations}
            assert "users_name_idx" in await indexes(dsn, tenant)
        down = await engine.downgrade(first)
        assert down.ok, down
    for tenant in TENANTS:
        assert set(await history(dsn, tenant)) == {
            m.version for m in migrations.migrations if m.version <= first}
        assert "users_name_idx" not in await indexes(dsn, tenant)
    return migrations


async def test_golang_migrate_up_and_down(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(GOLANG)
    await up_then_down(dsn, folder, 1)
    for tenant in TENANTS:
        assert await relations(dsn, tenant) >= {"users", "tenantmig_history"}
        assert "posts" not in await relations(dsn, tenant)


async def test_dbmate_up_and_down(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(DBMATE)
    await up_then_down(dsn, folder, 20200101000000)
    for tenant in TENANTS:
        # The seed's empty down undid nothing, and its history row is gone.
        rows = await fetch(dsn, f'SELECT id FROM "{tenant}".users')
        assert [r["id"] for r in rows] == [1]


async def test_diesel_up_and_down(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations(DIESEL)
    await up_then_down(dsn, folder, 20171230151035)
    for tenant in TENANTS:
        assert {"setup", "users"} <= await relations(dsn, tenant)
        assert [r["id"] for r in await fetch(dsn, f'SELECT id FROM "{tenant}".users')] == [1]


async def test_our_comments_only_undo_deletes_the_history_row(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    """A ``U`` file with comments only undoes nothing but still takes the version off the
    history, in a transaction or (``no-transaction``) without one."""
    folder = make_migrations({
        "V1__users.sql": "CREATE TABLE {{schema}}.users (id int);\n",
        "V2__seed.sql": "INSERT INTO {{schema}}.users VALUES (1);\n",
        "U2__seed.sql": "-- nothing to undo: the rows go with the table\n",
        "V3__more.sql": "INSERT INTO {{schema}}.users VALUES (2);\n",
        "U3__more.sql": "-- tenantmig:no-transaction\n-- kept on purpose\n",
    })
    await create_tenants(dsn, TENANTS)
    async with Engine(dsn, migrations=folder) as engine:
        assert (await engine.upgrade()).ok
        assert (await engine.downgrade(1)).ok
    for tenant in TENANTS:
        assert set(await history(dsn, tenant)) == {1}
        assert sorted(r["id"] for r in await fetch(dsn, f'SELECT id FROM "{tenant}".users')) \
            == [1, 2]
