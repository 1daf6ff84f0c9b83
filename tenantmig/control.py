"""The control schema (``tenantmig`` by default): its tables (runs, the failure ledger,
backfill progress; the ledger's rows are written and read by ``ledger``), the advisory
lock keys, and the server-side apply procedure.

The apply procedure runs a tenant's transactional SQL migrations in a single round trip
(see :func:`_apply_procedure_sql`): per migration, the tenant's transaction-level
advisory lock, the lock timeout and the tenant's ``search_path``, the history table on first
use, the history re-read under the lock, the migration and its history row. Called as
one statement it works through PgBouncer in transaction pooling mode.
"""

from __future__ import annotations

import hashlib
from typing import Any

from ._exceptions import ConfigError
from ._sql import quote_ident
from .history import HISTORY_COLUMNS, HISTORY_TABLE

# Bump when the function's body or signature changes; the name carries it so that
# runners of different releases never replace each other's function mid-run.
APPLY_PROCEDURE = "apply_v3"
CLAIM_FUNCTION = "claim_v3"
# Bumped when the control schema gains objects: an older one then gets them on the next run.
EXPECT_FUNCTION = "expect_v5"

# Raised by the claim and expect functions (see _claim_sql).
SQLSTATE_BUSY = "TM001"
"""Another runner holds the tenant: nothing ran; try again later."""
SQLSTATE_CHANGED = "TM002"
"""The tenant's history changed since it was planned: re-read it and go on from there."""

_CONTROL_LOCK_NAMESPACE = b"tenantmig:control:"
_TENANT_LOCK_NAMESPACE = b"tenantmig:tenant:"


def _key(namespace: bytes, name: str) -> int:
    digest = hashlib.blake2b(namespace + name.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def tenant_lock_key(schema: str) -> int:
    """The advisory lock key of one tenant: the same for every runner and for provision."""
    return _key(_TENANT_LOCK_NAMESPACE, schema)


def control_lock_key(control_schema: str) -> int:
    return _key(_CONTROL_LOCK_NAMESPACE, control_schema)


def apply_procedure(control_schema: str) -> str:
    return f"{quote_ident(control_schema)}.{APPLY_PROCEDURE}"


def claim_function(control_schema: str) -> str:
    return f"{quote_ident(control_schema)}.{CLAIM_FUNCTION}"


def expect_function(control_schema: str) -> str:
    return f"{quote_ident(control_schema)}.{EXPECT_FUNCTION}"


def _claim_sql(control_schema: str) -> list[str]:
    """The two functions of a batch (see ``executor``): take the tenant, check its history.

    ``claim`` takes the tenant's session-level advisory lock, trying, never waiting (a
    statement waiting here would hold a snapshot that another runner's CREATE INDEX
    CONCURRENTLY waits for), and raises ``SQLSTATE_BUSY`` when another runner holds it;
    it also restores an empty ``search_path`` and the run's lock timeout.
    ``expect`` runs in the next statement, so its history re-read sees what was committed
    before the lock was ours: when a version to apply is already there (or, undoing, one
    to undo is gone) it lets the tenant go and raises ``SQLSTATE_CHANGED``.
    """
    return [
        f"""
CREATE OR REPLACE FUNCTION {claim_function(control_schema)}(p_lock bigint)
RETURNS void LANGUAGE plpgsql AS $tenantmig$
BEGIN
    IF NOT pg_catalog.pg_try_advisory_lock(p_lock) THEN
        RAISE EXCEPTION 'tenant is being migrated by another runner'
            USING ERRCODE = '{SQLSTATE_BUSY}';
    END IF;
    -- The connection serves tenant after tenant: put back what a migration may have
    -- changed (the run's lock timeout is primed as tenantmig.lock_timeout).
    IF pg_catalog.current_setting('search_path') <> '' THEN
        PERFORM pg_catalog.set_config('search_path', '', false);
    END IF;
    IF pg_catalog.current_setting('lock_timeout')
            <> pg_catalog.current_setting('tenantmig.lock_timeout', true) THEN
        PERFORM pg_catalog.set_config('lock_timeout',
            pg_catalog.current_setting('tenantmig.lock_timeout'), false);
    END IF;
END
$tenantmig$
""",
        f"""
CREATE OR REPLACE FUNCTION {expect_function(control_schema)}(
    p_lock bigint, p_found bigint[], p_todo bigint[], p_undo boolean
)
RETURNS void LANGUAGE plpgsql AS $tenantmig$
BEGIN
    IF pg_catalog.cardinality(p_found)
            <> (CASE WHEN p_undo THEN pg_catalog.cardinality(p_todo) ELSE 0 END) THEN
        PERFORM pg_catalog.pg_advisory_unlock(p_lock);
        RAISE EXCEPTION 'tenant history changed since it was read'
            USING ERRCODE = '{SQLSTATE_CHANGED}';
    END IF;
END
$tenantmig$
""",
    ]


def _apply_procedure_sql(control_schema: str) -> str:
    """The procedure every transactional SQL migration goes through.

    Per migration it takes the tenant's transaction-level advisory lock (trying, never
    waiting: a statement waiting here would hold a snapshot that another runner's CREATE
    INDEX CONCURRENTLY waits for), sets ``search_path`` to ``p_search_path`` (the tenant
    and the shared schemas) for the transaction and makes sure of the migration's
    ``lock_timeout``, creates the history table on first use, re-reads the
    history under the lock, runs the migration and records it. With ``p_commit`` it
    COMMITs after each migration, so a tenant's whole run is one round trip with one
    transaction per migration; without it, it runs inside the caller's transaction.
    With no versions it only takes the lock and prepares (for Python migrations).

    On return ``p_next`` is the index of the first version not processed: lower than or
    equal to the number of versions (0 when there are none) when another runner holds the
    tenant and the caller must try again.
    """
    history = HISTORY_TABLE
    return f"""
CREATE OR REPLACE PROCEDURE {apply_procedure(control_schema)}(
    p_schema text,
    p_lock bigint,
    p_run_id text,
    p_lock_timeouts text[],
    p_versions bigint[],
    p_descriptions text[],
    p_checksums text[],
    p_sqls text[],
    p_undo boolean,
    p_commit boolean,
    p_search_path text DEFAULT '',
    INOUT p_done bigint[] DEFAULT NULL,
    INOUT p_next integer DEFAULT NULL
)
LANGUAGE plpgsql AS $tenantmig$
DECLARE
    v_n integer := coalesce(pg_catalog.array_length(p_versions, 1), 0);
    v_started timestamptz;
    v_one integer;
    v_locked boolean := false;
    v_history_checked boolean := false;
    v_created boolean := false;
BEGIN
    p_done := '{{}}';
    p_next := 1;
    LOOP
        IF NOT v_locked THEN
            IF NOT pg_catalog.pg_try_advisory_xact_lock(p_lock) THEN
                IF v_n = 0 THEN
                    p_next := 0;
                END IF;
                RETURN;
            END IF;
            v_locked := true;
        END IF;
        -- The tenant first, then the shared schemas, for this transaction only: the
        -- migrations' unqualified names resolve in the tenant (every name of ours is
        -- qualified). Setting a GUC costs more than comparing it.
        IF pg_catalog.current_setting('search_path') <> p_search_path THEN
            PERFORM pg_catalog.set_config('search_path', p_search_path, true);
        END IF;
        -- The rendered SQL doubles the quotes of a name inside '...': that holds only
        -- while a backslash is an ordinary character (an application's pool, PgBouncer).
        IF pg_catalog.current_setting('standard_conforming_strings') <> 'on' THEN
            PERFORM pg_catalog.set_config('standard_conforming_strings', 'on', true);
        END IF;
        IF pg_catalog.current_setting('lock_timeout') <> p_lock_timeouts[least(p_next, v_n + 1)]
        THEN
            PERFORM pg_catalog.set_config('lock_timeout', p_lock_timeouts[least(p_next, v_n + 1)],
                                          true);
        END IF;
        IF NOT v_history_checked THEN
            IF pg_catalog.to_regclass(p_schema || '.{history}') IS NULL THEN
                EXECUTE 'CREATE TABLE ' || p_schema || '.{history} ({HISTORY_COLUMNS})';
                -- Created by this transaction under the tenant lock: empty, and invisible
                -- to every other session, so there is nothing to re-read.
                v_created := true;
            END IF;
            v_history_checked := true;
        END IF;
        EXIT WHEN p_next > v_n;
        v_one := NULL;
        IF NOT v_created THEN
            -- The re-read under the lock, in its own statement (a fresh snapshot).
            EXECUTE 'SELECT 1 FROM ' || p_schema || '.{history} WHERE version = $1'
                INTO v_one USING p_versions[p_next];
        END IF;
        IF (v_one IS NOT NULL) = p_undo THEN
            v_started := pg_catalog.clock_timestamp();
            EXECUTE p_sqls[p_next];
            IF p_undo THEN
                EXECUTE 'DELETE FROM ' || p_schema || '.{history} WHERE version = $1'
                USING p_versions[p_next];
            ELSE
                EXECUTE 'INSERT INTO ' || p_schema || '.{history} '
                    || '(version, description, checksum, applied_at, duration_ms, run_id) '
                    || 'VALUES ($1, $2, $3, now(), $4, $5)'
                USING p_versions[p_next], p_descriptions[p_next], p_checksums[p_next],
                    (extract(epoch FROM pg_catalog.clock_timestamp() - v_started)
                        * 1000)::integer,
                    p_run_id;
            END IF;
            p_done := p_done || p_versions[p_next];
        END IF;
        p_next := p_next + 1;
        EXIT WHEN p_next > v_n;
        IF p_commit THEN
            COMMIT;
            v_locked := false;
            v_created := false;
        END IF;
    END LOOP;
END
$tenantmig$
"""


def _control_ddl(control_schema: str) -> list[str]:
    ctl = quote_ident(control_schema)
    return [
        f"CREATE SCHEMA IF NOT EXISTS {ctl}",
        f"""CREATE TABLE IF NOT EXISTS {ctl}.runs (
            run_id text PRIMARY KEY,
            command text NOT NULL,
            target bigint,
            status text NOT NULL DEFAULT 'running',
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            invoked_by text NOT NULL DEFAULT current_user,
            hostname text,
            arguments jsonb NOT NULL DEFAULT '{{}}',
            resumed_from text,
            tenants integer NOT NULL DEFAULT 0,
            heartbeat_at timestamptz
        )""",
        f"ALTER TABLE {ctl}.runs ADD COLUMN IF NOT EXISTS heartbeat_at timestamptz",
        f"""CREATE TABLE IF NOT EXISTS {ctl}.ledger (
            run_id text NOT NULL REFERENCES {ctl}.runs (run_id) ON DELETE CASCADE,
            tenant text NOT NULL,
            status text NOT NULL,
            version_before bigint,
            version_reached bigint,
            target bigint,
            failing_version bigint,
            sqlstate text,
            message text,
            attempts integer NOT NULL DEFAULT 0,
            started_at timestamptz,
            finished_at timestamptz,
            PRIMARY KEY (run_id, tenant)
        )""",
        f"CREATE INDEX IF NOT EXISTS runs_started_at_idx ON {ctl}.runs (started_at)",
        f"""CREATE TABLE IF NOT EXISTS {ctl}.backfills (
            tenant text NOT NULL,
            version bigint NOT NULL,
            name text NOT NULL,
            last_key bigint NOT NULL,
            rows bigint NOT NULL DEFAULT 0,
            batches integer NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now(),
            fingerprint text,
            PRIMARY KEY (tenant, version, name)
        )""",
        f"ALTER TABLE {ctl}.backfills ADD COLUMN IF NOT EXISTS fingerprint text",
        _apply_procedure_sql(control_schema),
        # Last: control_exists looks for it, so a control schema of an older release
        # gets the newer objects.
        *_claim_sql(control_schema),
    ]


_CONTROL_EXISTS = """
SELECT (SELECT count(*) FROM pg_catalog.pg_class c
        JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = $1 AND c.relname = ANY($2::text[])) = pg_catalog.cardinality($2)
   AND ($3::text IS NULL OR EXISTS (
        SELECT 1 FROM pg_catalog.pg_proc p
        JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = $1 AND p.proname = $3))
"""


async def control_exists(conn: Any, control_schema: str, *, this_release: bool = True) -> bool:
    """Whether this release's control objects exist; with ``this_release=False``, whether
    the runs and the ledger exist (those of an older release can be read).

    A query on the catalogs, not ``to_regprocedure``: its MVCC snapshot sees what another
    runner committed while we waited for the control lock; the catalog caches may not.
    """
    if this_release:
        return bool(await conn.fetchval(
            _CONTROL_EXISTS, control_schema, ["runs", "ledger", "backfills"], EXPECT_FUNCTION
        ))
    return bool(await conn.fetchval(_CONTROL_EXISTS, control_schema, ["runs", "ledger"], None))


async def ensure_control(conn: Any, control_schema: str, prefix: str = "") -> None:
    """Create the control schema, its tables and the apply procedure if missing.

    Serialised by an advisory lock so two runners starting together do not collide.
    """
    if await control_exists(conn, control_schema):
        return
    async with conn.transaction():
        await conn.execute("SELECT pg_catalog.pg_advisory_xact_lock($1)",
                           control_lock_key(control_schema))
        if await control_exists(conn, control_schema):
            return
        # A schema that is a tenant must not become the control schema: discovery would
        # skip it from then on. It is one if it holds a history table, or if it exists
        # and the tenant prefix matches it (a tenant not migrated yet).
        is_tenant = await conn.fetchval(
            "SELECT pg_catalog.to_regclass($1) IS NOT NULL OR (left($2, length($3)) = $3 "
            "AND $3 <> '' AND EXISTS (SELECT 1 FROM pg_catalog.pg_namespace "
            "WHERE nspname = $2))",
            f"{quote_ident(control_schema)}.{HISTORY_TABLE}", control_schema, prefix)
        if is_tenant:
            raise ConfigError(f"control schema {control_schema!r} is a tenant schema; name "
                              "another --control-schema")
        # One simple query, one round trip (the bodies' semicolons are dollar-quoted).
        await conn.execute(";\n".join(_control_ddl(control_schema)))
