"""Reading every tenant's history, which ``status``, ``plan`` and ``up`` all start with.

Where the control schema has its reader function, the histories are read through it;
elsewhere (no control schema yet, an older release's, or a role that may not call it) as
UNION ALL queries. Both must give the same answer, names that need quoting included.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote, urlsplit, urlunsplit

from helpers import create_tenants, execute, fetchval, quote_ident

from tenantmig import Engine
from tenantmig.report import Status

MakeMigrations = Callable[..., Path]

MIGRATIONS = {
    "V1__create_t.sql": "CREATE TABLE {{schema}}.t (id int);\n",
    "V2__add_name.sql": "ALTER TABLE {{schema}}.t ADD COLUMN name text;\n",
    "V3__add_note.sql": "ALTER TABLE {{schema}}.t ADD COLUMN note text;\n",
}

# More tenants than one UNION ALL chunk (32) or one reader call (a concurrency's share)
# holds, names that need quoting among them.
AT_HEAD = ["tenant_MixedCase", "tenant_O'Brien \"x\"", "tenant_" + "x" * 56] + [
    f"tenant_h{i:03d}" for i in range(40)
]
AT_ONE = [f"tenant_one{i:02d}" for i in range(30)]
NEVER = ["tenant_never"]

READER = "SELECT count(*) FROM pg_proc WHERE proname = 'read_history_v1'"


def where(status: Status) -> dict[str, tuple[int | None, tuple[int, ...], tuple[int, ...]]]:
    """tenant -> (version, pending, drifted)."""
    return {t.tenant: (t.current, t.pending, t.drifted) for t in status.tenants}


def as_role(dsn: str, role: str, password: str) -> str:
    parts = urlsplit(dsn)
    host = parts.netloc.rsplit("@", 1)[-1]
    return urlunsplit(parts._replace(netloc=f"{quote(role)}:{quote(password)}@{host}"))


async def migrate_some(dsn: str, folder: Path) -> None:
    """AT_HEAD at version 3, AT_ONE at 1, NEVER untouched."""
    await create_tenants(dsn, AT_HEAD + AT_ONE + NEVER)
    async with Engine(dsn, migrations=folder, concurrency=4) as engine:
        assert (await engine.upgrade(AT_ONE, target=1)).ok
        assert (await engine.upgrade(AT_HEAD)).ok


async def status(dsn: str, folder: Path) -> Status:
    async with Engine(dsn, migrations=folder, concurrency=4) as engine:
        return await engine.status()


async def test_reader_and_union_all_read_the_same(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(MIGRATIONS)
    await migrate_some(dsn, folder)
    expected = (
        {t: (3, (), ()) for t in AT_HEAD}
        | {t: (1, (2, 3), ()) for t in AT_ONE}
        | {t: (None, (1, 2, 3), ()) for t in NEVER}
    )
    assert await fetchval(dsn, READER) == 1
    assert where(await status(dsn, folder)) == expected

    # The same database read without the reader function (as a control schema of an
    # older release would be): the same answer.
    await execute(dsn, "DROP FUNCTION tenantmig.read_history_v1(text[])")
    assert where(await status(dsn, folder)) == expected

    # An edited file is drift, whichever way the histories are read.
    (folder / "V1__create_t.sql").write_text("CREATE TABLE {{schema}}.t (id bigint);\n")
    drifted = {t: (v, p, (1,) if v is not None else ()) for t, (v, p, _) in expected.items()}
    assert where(await status(dsn, folder)) == drifted


async def test_an_older_control_schema_is_read_and_then_upgraded(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    folder = make_migrations(MIGRATIONS)
    await migrate_some(dsn, folder)
    await execute(dsn, "DROP FUNCTION tenantmig.read_history_v1(text[])")

    # Its runs are still shown: the latest run is the one that brought AT_HEAD to 3.
    before = await status(dsn, folder)
    assert before.last_run is not None and before.last_run.tenants == len(AT_HEAD)

    # The next run with work to do brings the control schema up to this release.
    async with Engine(dsn, migrations=folder) as engine:
        report = await engine.upgrade(NEVER)
    assert report.ok and report.applied_count == 3
    assert await fetchval(dsn, READER) == 1
    after = await status(dsn, folder)
    assert after.last_run is not None and after.last_run.run_id == report.run_id
    assert where(after)["tenant_never"] == (3, (), ())


async def test_a_role_that_may_not_call_the_reader_reads_all_the_same(
    dsn: str, make_migrations: MakeMigrations
) -> None:
    """A hardened database revokes EXECUTE on functions from PUBLIC; a monitoring role with
    read access to the tenants and the ledger still gets a true status."""
    folder = make_migrations(MIGRATIONS)
    await migrate_some(dsn, folder)
    role = "tm_watch_" + dsn.rsplit("/", 1)[-1]  # roles are cluster-wide; databases are not
    tenant_grants = "".join(
        f"GRANT USAGE ON SCHEMA {quote_ident(t)} TO {role}; "
        f"GRANT SELECT ON ALL TABLES IN SCHEMA {quote_ident(t)} TO {role}; "
        for t in AT_HEAD + AT_ONE + NEVER
    )
    await execute(
        dsn,
        f"CREATE ROLE {role} LOGIN PASSWORD 'watch'; "
        f"REVOKE EXECUTE ON FUNCTION tenantmig.read_history_v1(text[]) FROM PUBLIC; "
        f"GRANT USAGE ON SCHEMA tenantmig TO {role}; "
        f"GRANT SELECT ON ALL TABLES IN SCHEMA tenantmig TO {role}; " + tenant_grants,
    )
    try:
        assert not await fetchval(
            dsn,
            "SELECT has_function_privilege($1, 'tenantmig.read_history_v1(text[])', 'EXECUTE')",
            role,
        )
        expected = where(await status(dsn, folder))
        watched = await status(as_role(dsn, role, "watch"), folder)
        assert where(watched) == expected
        assert sum(1 for v, _, _ in expected.values() if v == 3) == len(AT_HEAD)
    finally:
        await execute(dsn, f"DROP OWNED BY {role}; DROP ROLE {role}")
