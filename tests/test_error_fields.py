"""A failed tenant's message keeps PostgreSQL's DETAIL, HINT and CONTEXT: which trigger
function, which line; in the ledger, the log event and the summary alike."""

from __future__ import annotations

import pytest
from helpers import MakeMigrations, create_tenants, fetch, tm
from structlog.testing import capture_logs

import tenantmig

TRIGGER_HISTORY = {
    "V1__posts.sql": """
        CREATE TABLE posts (id int PRIMARY KEY);
        INSERT INTO posts VALUES (1), (2);
        CREATE FUNCTION refresh_stats() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            DELETE FROM user_mview;
            RETURN NULL;
        END $$;
        CREATE TRIGGER posts_refresh AFTER DELETE ON posts
            FOR EACH STATEMENT EXECUTE FUNCTION refresh_stats();
    """,
    # Fires the trigger, whose body names a relation that does not exist.
    "V2__purge.sql": """
        -- tenantmig:allow unbatched-dml two rows
        DELETE FROM posts WHERE id = 2;
    """,
}


@pytest.mark.parametrize("atomic", [False, True])
async def test_a_trigger_failure_names_the_trigger_function(
    dsn: str, make_migrations: MakeMigrations, atomic: bool
) -> None:
    folder = make_migrations(TRIGGER_HISTORY)
    await create_tenants(dsn, ["tenant_a"])
    with capture_logs() as events:
        async with tenantmig.Engine(dsn, migrations=folder, atomic_tenant=atomic) as engine:
            report = await engine.upgrade()
    (failed,) = report.failed
    assert failed.failing_version == 2 and failed.sqlstate == "42P01"
    message = failed.message or ""
    assert message.startswith('relation "user_mview" does not exist')
    assert "CONTEXT: " in message and "refresh_stats() line 3" in message, message
    assert "apply_v" not in message and "claim_v" not in message
    (row,) = await fetch(dsn, "SELECT message FROM tenantmig.ledger WHERE tenant = 'tenant_a'")
    assert row["message"] == message
    logged = [e for e in events if e["event"] == "tenant failed"]
    assert logged and "refresh_stats() line 3" in logged[0]["error"]


async def test_detail_and_hint_are_kept(dsn: str, make_migrations: MakeMigrations) -> None:
    folder = make_migrations({
        "V1__check.sql": """
            DO $$ BEGIN
                RAISE EXCEPTION 'bad data in tenant' USING DETAIL = 'row 7 has no owner',
                    HINT = 'give row 7 an owner, then resume';
            END $$;
        """,
    })
    await create_tenants(dsn, ["tenant_a"])
    r = tm("up", "--dsn", dsn, "--migrations", folder, cwd=folder.parent)
    assert r.returncode == 1
    (row,) = await fetch(dsn, "SELECT message FROM tenantmig.ledger WHERE tenant = 'tenant_a'")
    assert row["message"].startswith(
        "bad data in tenant (row 7 has no owner); HINT: give row 7 an owner, then resume; "
        "CONTEXT: PL/pgSQL function inline_code_block line 2 at RAISE"), row["message"]
    report = tm("ledger", "--json", "--dsn", dsn, cwd=folder.parent)
    assert "HINT: give row 7 an owner" in report.stdout
