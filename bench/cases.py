"""What is migrated: the tenants, the migration sets of each case, setup and verification.

Everything here is plain SQL through asyncpg; tenantmig's own tables are read or written
only where a case needs them (``insert_earlier_runs``), by their documented names.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import asyncpg
from cluster import drop_database, dsn_with_database, exec_admin, quote_ident

RAW_DB = "bench_raw"
TM_DB = "bench_tm"
TEMPLATE_DB = "bench_template"
PREFIX = "tenant_"
HISTORY_TABLE = "tenantmig_history"
CONTROL_SCHEMA = "tenantmig"
SETUP_BATCH = 100  # tenants per transaction (one round trip) when building the template
SETUP_CONNECTIONS = 4
ROWS_PER_TENANT = 10

CASES = ("first", "release", "noop", "status", "provision")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str
    change: str
    """The key in CHANGES that shows this migration was applied."""

    @property
    def filename(self) -> str:
        return f"V{self.version}__{self.name}.sql"


_FIVE: tuple[tuple[str, str, str], ...] = (
    ("accounts_add_status", "ALTER TABLE {{schema}}.accounts ADD COLUMN status text;\n",
     "status_column"),
    (
        "create_events",
        "CREATE TABLE {{schema}}.events (\n"
        "    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "    account_id bigint,\n"
        "    payload jsonb\n"
        ");\n",
        "events",
    ),
    (
        "events_account_id_index",
        # events is created empty by the migration before, in the same run: the build takes
        # no time, and the floor runs the very same statement.
        "-- tenantmig:allow index-not-concurrent the events table was created empty just before\n"
        "CREATE INDEX events_account_id_idx ON {{schema}}.events (account_id);\n",
        "events_index",
    ),
    ("accounts_add_plan", "ALTER TABLE {{schema}}.accounts ADD COLUMN plan text DEFAULT 'free';\n",
     "plan_column"),
    (
        "accounts_email_check",
        "ALTER TABLE {{schema}}.accounts\n"
        "    ADD CONSTRAINT accounts_email_check CHECK (email LIKE '%@%') NOT VALID;\n",
        "check_not_valid",
    ),
)

# first, noop, status: the five migrations, V1-V5.
FIRST = tuple(Migration(v, n, s, c) for v, (n, s, c) in enumerate(_FIVE, start=1))
# release: the same five, already applied (untimed), and one new migration.
RELEASE_NEW = Migration(
    6,
    "accounts_add_last_login",
    "ALTER TABLE {{schema}}.accounts ADD COLUMN last_login timestamptz;\n",
    "last_login_column",
)
RELEASE = (*FIRST, RELEASE_NEW)
# provision: a new schema has no accounts table, so V1 creates it (a no-op on the N tenants
# of the template, which already have it), then the five as V2-V6.
_ACCOUNTS = (
    "CREATE TABLE IF NOT EXISTS {{schema}}.accounts (id bigint GENERATED ALWAYS AS IDENTITY "
    "PRIMARY KEY, email text, created_at timestamptz DEFAULT now());\n"
)
PROVISION = (
    Migration(1, "create_accounts", _ACCOUNTS, "accounts"),
    *(Migration(v, n, s, c) for v, (n, s, c) in enumerate(_FIVE, start=2)),
)


def migration_set(case: str) -> tuple[Migration, ...]:
    """The migration files tenantmig is given in the timed step of *case*."""
    return {"release": RELEASE, "provision": PROVISION}.get(case, FIRST)


def render(sql: str, schema: str) -> str:
    return sql.replace("{{schema}}", quote_ident(schema))


def tenant_names(n: int) -> list[str]:
    width = max(5, len(str(n)))
    return [f"{PREFIX}{i:0{width}d}" for i in range(1, n + 1)]


def write_migrations(directory: Path, migrations: Sequence[Migration]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for m in migrations:
        (directory / m.filename).write_text(m.sql, encoding="utf-8")
    return directory


# --- databases ----------------------------------------------------------------------------


def _tenant_ddl(schema: str) -> str:
    s = quote_ident(schema)
    return (
        f"CREATE SCHEMA {s};\n"
        f"CREATE TABLE {s}.accounts (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
        "email text, created_at timestamptz DEFAULT now());\n"
        f"INSERT INTO {s}.accounts (email) SELECT 'user' || g || '@example.com' "
        f"FROM generate_series(1, {ROWS_PER_TENANT}) AS g;\n"
    )


async def build_template(admin_dsn: str, names: Sequence[str]) -> None:
    """The template database: every tenant schema with its accounts table and rows.

    Batches of SETUP_BATCH tenants per transaction, each batch one round trip, on
    SETUP_CONNECTIONS connections at once.
    """
    await drop_database(admin_dsn, TEMPLATE_DB)
    await exec_admin(admin_dsn, f"CREATE DATABASE {quote_ident(TEMPLATE_DB)}")
    dsn = dsn_with_database(admin_dsn, TEMPLATE_DB)
    batches: asyncio.Queue[list[str]] = asyncio.Queue()
    for start in range(0, len(names), SETUP_BATCH):
        batches.put_nowait(list(names[start : start + SETUP_BATCH]))

    async def worker() -> None:
        conn = await asyncpg.connect(dsn)
        try:
            while not batches.empty():
                batch = batches.get_nowait()
                await conn.execute("BEGIN;\n" + "".join(_tenant_ddl(n) for n in batch) + "COMMIT;")
        finally:
            await conn.close()

    await asyncio.gather(*(worker() for _ in range(SETUP_CONNECTIONS)))
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute("VACUUM ANALYZE")
    finally:
        await conn.close()


async def clone_databases(admin_dsn: str, names: Sequence[str] = (RAW_DB, TM_DB)) -> None:
    """Fresh copies of the template."""
    for name in names:
        await drop_database(admin_dsn, name)
        await exec_admin(
            admin_dsn,
            f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(TEMPLATE_DB)}",
        )


async def insert_earlier_runs(dsn: str, count: int) -> int:
    """*count* copies of the ledger's one run (the untimed ``up``), dated 3 days apart
    back from it: a year of deploys at 100. Columns are copied as the real run wrote them,
    so the rows stay valid whatever the ledger's shape. Returns the ledger rows added."""
    ctl = quote_ident(CONTROL_SCHEMA)
    conn = await asyncpg.connect(dsn)
    try:
        real = await conn.fetchval(
            f"SELECT run_id FROM {ctl}.runs ORDER BY started_at DESC LIMIT 1"
        )
        if real is None:
            raise SystemExit("--earlier-runs: no run in the ledger to copy")

        async def copy(table: str) -> str:
            cols = [
                r["column_name"]
                for r in await conn.fetch(
                    "SELECT column_name FROM information_schema.columns "
                    "WHERE table_schema = $1 AND table_name = $2 ORDER BY ordinal_position",
                    CONTROL_SCHEMA,
                    table,
                )
            ]
            exprs = []
            for c in cols:
                if c == "run_id":
                    exprs.append("'bench-earlier-' || lpad(g::text, 5, '0')")
                elif c.endswith("_at"):
                    exprs.append(f"x.{quote_ident(c)} - g * interval '3 days'")
                else:
                    exprs.append(f"x.{quote_ident(c)}")
            col_list = ", ".join(quote_ident(c) for c in cols)
            status: str = await conn.execute(
                f"INSERT INTO {ctl}.{quote_ident(table)} ({col_list}) "
                f"SELECT {', '.join(exprs)} FROM {ctl}.{quote_ident(table)} AS x, "
                "generate_series(1, $2) AS g WHERE x.run_id = $1",
                real,
                count,
            )
            return status

        async with conn.transaction():
            await copy("runs")
            status = await copy("ledger")
        # A ledger a year old has long been analysed by autovacuum.
        await conn.execute(f"VACUUM ANALYZE {ctl}.runs, {ctl}.ledger")
        return int(status.split()[-1])
    finally:
        await conn.close()


# --- verification -------------------------------------------------------------------------


def _column(name: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM pg_catalog.pg_class c JOIN pg_catalog.pg_attribute a "
        "ON a.attrelid = c.oid AND NOT a.attisdropped WHERE c.relnamespace = n.oid "
        f"AND c.relname = 'accounts' AND a.attname = '{name}')"
    )


def _relation(name: str, kind: str) -> str:
    return (
        "EXISTS (SELECT 1 FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid "
        f"AND c.relname = '{name}' AND c.relkind = '{kind}')"
    )


CHANGES = {
    "accounts": _relation("accounts", "r"),
    "status_column": _column("status"),
    "events": _relation("events", "r"),
    "events_index": _relation("events_account_id_idx", "i"),
    "plan_column": _column("plan"),
    "check_not_valid": (
        "EXISTS (SELECT 1 FROM pg_catalog.pg_constraint k WHERE k.connamespace = n.oid "
        "AND k.conname = 'accounts_email_check' AND NOT k.convalidated)"
    ),
    "last_login_column": _column("last_login"),
    "history_table": _relation(HISTORY_TABLE, "r"),
}


async def verify(
    dsn: str, names: Sequence[str], migrations: Sequence[Migration], *, with_history: bool
) -> list[str]:
    """Problems found: empty when every tenant of *names* shows every change of
    *migrations* and, if asked, a history of exactly their versions."""
    keys = [m.change for m in migrations] + (["history_table"] if with_history else [])
    expected = [m.version for m in migrations]
    n = len(names)
    problems: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        counts = ", ".join(f"count(*) FILTER (WHERE {CHANGES[k]}) AS {k}" for k in keys)
        row = await conn.fetchrow(
            f"SELECT count(n.oid) AS tenants, {counts} FROM unnest($1::text[]) AS t(name) "
            "LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = t.name",
            list(names),
        )
        assert row is not None
        for key in ["tenants", *keys]:
            if row[key] != n:
                problems.append(f"{key}: {row[key]} of {n} tenants")
        if with_history and row["history_table"] == n:
            bad = 0
            for start in range(0, n, 500):
                chunk = names[start : start + 500]
                query = " UNION ALL ".join(
                    f"SELECT array_agg(version ORDER BY version) AS v "
                    f"FROM {quote_ident(t)}.{HISTORY_TABLE}"
                    for t in chunk
                )
                bad += sum(1 for r in await conn.fetch(query) if list(r["v"] or []) != expected)
            if bad:
                problems.append(
                    f"history not exactly versions {expected[0]}-{expected[-1]}: "
                    f"{bad} of {n} tenants"
                )
    finally:
        await conn.close()
    return problems
