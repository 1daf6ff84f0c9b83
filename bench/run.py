"""Benchmark: ``tenantmig up`` against the raw floor on N tenant schemas.

The raw floor is plain asyncpg: a pool of ``concurrency`` connections and as many workers
pulling tenants from a shared queue, each running the same five DDL statements in autocommit
with no locks, no history and no bookkeeping. tenantmig applies the same five statements
(as five migration files) to an identical copy of the database with the same concurrency.

    .venv/bin/python bench/run.py --tenants 1000 --concurrency 8 [--repeat 3] [--json out.json]

See bench/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import importlib.util
import json
import os
import platform
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit, urlunsplit

import asyncpg

RAW_DB = "bench_raw"
TM_DB = "bench_tm"
TEMPLATE_DB = "bench_template"
PREFIX = "tenant_"
HISTORY_TABLE = "tenantmig_history"
SETUP_BATCH = 100  # tenants per transaction (one round trip) when building the template
SETUP_CONNECTIONS = 4
ROWS_PER_TENANT = 10

# The five migrations: (file name, SQL). The raw floor runs exactly these statements.
MIGRATIONS: tuple[tuple[str, str], ...] = (
    ("V1__accounts_add_status.sql", "ALTER TABLE {{schema}}.accounts ADD COLUMN status text;\n"),
    (
        "V2__create_events.sql",
        "CREATE TABLE {{schema}}.events (\n"
        "    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,\n"
        "    account_id bigint,\n"
        "    payload jsonb\n"
        ");\n",
    ),
    (
        "V3__events_account_id_index.sql",
        # events is created empty by V2 in the same run: the build takes no time, and the
        # raw floor runs the very same statement.
        "-- tenantmig:allow index-not-concurrent the events table was created empty by V2\n"
        "CREATE INDEX events_account_id_idx ON {{schema}}.events (account_id);\n",
    ),
    (
        "V4__accounts_add_plan.sql",
        "ALTER TABLE {{schema}}.accounts ADD COLUMN plan text DEFAULT 'free';\n",
    ),
    (
        "V5__accounts_email_check.sql",
        "ALTER TABLE {{schema}}.accounts\n"
        "    ADD CONSTRAINT accounts_email_check CHECK (email LIKE '%@%') NOT VALID;\n",
    ),
)

T = TypeVar("T")


# --- small helpers ------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def render(sql: str, schema: str) -> str:
    return sql.replace("{{schema}}", quote_ident(schema))


def dsn_with_database(dsn: str, dbname: str) -> str:
    parts = urlsplit(dsn)
    if parts.scheme not in ("postgres", "postgresql"):
        raise SystemExit(f"--dsn must be a postgresql:// URL, got {dsn!r}")
    return urlunsplit(parts._replace(path="/" + quote(dbname, safe="")))


def tenant_names(n: int) -> list[str]:
    width = max(5, len(str(n)))
    return [f"{PREFIX}{i:0{width}d}" for i in range(1, n + 1)]


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


# --- machine ------------------------------------------------------------------------------


def _ram_gib() -> float | None:
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    return None


async def machine_info(admin_dsn: str) -> dict[str, Any]:
    conn = await asyncpg.connect(admin_dsn)
    try:
        pg_version = await conn.fetchval("SELECT version()")
        settings = {
            r["name"]: r["setting"]
            for r in await conn.fetch(
                "SELECT name, setting FROM pg_settings WHERE name = ANY($1::text[])",
                [
                    "fsync",
                    "synchronous_commit",
                    "full_page_writes",
                    "shared_buffers",
                    "max_connections",
                ],
            )
        }
    finally:
        await conn.close()
    return {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "ram_gib": _ram_gib(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "asyncpg": asyncpg.__version__,
        "postgres": pg_version,
        "postgres_settings": settings,
    }


# --- databases ----------------------------------------------------------------------------


async def _exec_admin(admin_dsn: str, *statements: str) -> None:
    conn = await asyncpg.connect(admin_dsn)
    try:
        for statement in statements:
            await conn.execute(statement)
    finally:
        await conn.close()


async def drop_database(admin_dsn: str, name: str) -> None:
    await _exec_admin(admin_dsn, f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)")


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
    await _exec_admin(admin_dsn, f"CREATE DATABASE {quote_ident(TEMPLATE_DB)}")
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


async def clone_databases(admin_dsn: str) -> None:
    """Fresh bench_raw and bench_tm, identical copies of the template."""
    for name in (RAW_DB, TM_DB):
        await drop_database(admin_dsn, name)
        await _exec_admin(
            admin_dsn,
            f"CREATE DATABASE {quote_ident(name)} TEMPLATE {quote_ident(TEMPLATE_DB)}",
        )


async def checkpoint(admin_dsn: str) -> bool:
    """Flush dirty buffers so each timed phase starts from the same state."""
    try:
        await _exec_admin(admin_dsn, "CHECKPOINT")
    except asyncpg.PostgresError:
        return False
    return True


# --managed: every tenant is already under tenantmig (its history table exists, holding the
# baseline), as on every release after the first; the five migrations then become V2-V6.
BASELINE = ("V1__baseline.sql", "COMMENT ON SCHEMA {{schema}} IS 'tenant';\n")


def write_migrations(directory: Path, *, managed: bool = False) -> None:
    """The five migrations as V1-V5, or after the baseline as V2-V6 when *managed*."""
    directory.mkdir(parents=True, exist_ok=True)
    if not managed:
        for filename, sql in MIGRATIONS:
            (directory / filename).write_text(sql, encoding="utf-8")
        return
    (directory / BASELINE[0]).write_text(BASELINE[1], encoding="utf-8")
    for number, (filename, sql) in enumerate(MIGRATIONS, start=2):
        (directory / f"V{number}__{filename.split('__', 1)[1]}").write_text(sql, encoding="utf-8")


def write_baseline(directory: Path) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / BASELINE[0]).write_text(BASELINE[1], encoding="utf-8")


async def raw_baseline(dsn: str, names: Sequence[str], concurrency: int) -> float:
    """The baseline statement in every tenant of the raw database (untimed, for symmetry)."""

    async def work(conn: Any, tenant: str) -> None:
        await conn.execute(render(BASELINE[1], tenant))

    return await fan_out(dsn, names, concurrency, work)


# --- the raw floor ------------------------------------------------------------------------


PerTenant = Callable[[Any, str], Awaitable[None]]


async def fan_out(dsn: str, names: Sequence[str], concurrency: int, work: PerTenant) -> float:
    """Seconds for *work* on every tenant: a pool, ``concurrency`` workers, a shared queue."""
    t0 = time.perf_counter()
    pool = await asyncpg.create_pool(dsn, min_size=concurrency, max_size=concurrency)
    try:
        queue: asyncio.Queue[str] = asyncio.Queue()
        for name in names:
            queue.put_nowait(name)

        async def worker() -> None:
            while not queue.empty():
                tenant = queue.get_nowait()
                async with pool.acquire() as conn:
                    await work(conn, tenant)

        await asyncio.gather(*(worker() for _ in range(concurrency)))
    finally:
        await pool.close()
    return time.perf_counter() - t0


async def raw_floor(dsn: str, names: Sequence[str], concurrency: int) -> float:
    """Seconds for the five statements on every tenant, plain asyncpg, autocommit."""
    statements = [sql for _, sql in MIGRATIONS]

    async def work(conn: Any, tenant: str) -> None:
        for sql in statements:
            await conn.execute(render(sql, tenant))

    return await fan_out(dsn, names, concurrency, work)


# --- tenantmig ----------------------------------------------------------------------------


def cli_available() -> bool:
    return importlib.util.find_spec("tenantmig.__main__") is not None


def probe_cli() -> str | None:
    """None when ``python -m tenantmig up --help`` works, else why not."""
    if not cli_available():
        return "tenantmig/__main__.py does not exist"
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "tenantmig", "up", "--help"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        return f"python -m tenantmig failed: {exc}"
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return f"python -m tenantmig up --help exited {proc.returncode}: {tail[0]}"
    return None


def compile_bytecode() -> None:
    """Write tenantmig's bytecode, as ``pip install`` does. An editable install under
    PYTHONDONTWRITEBYTECODE (set on the development machine) would otherwise compile every
    module at every CLI start, about 50 ms that no installed copy pays."""
    import compileall

    import tenantmig

    compileall.compile_dir(str(Path(tenantmig.__file__).parent), quiet=1)


def cli_startup_seconds() -> float:
    """Wall time of ``python -m tenantmig --help``: interpreter start plus imports."""
    t0 = time.perf_counter()
    subprocess.run(
        [sys.executable, "-m", "tenantmig", "--help"], capture_output=True, check=False, timeout=60
    )
    return time.perf_counter() - t0


@dataclass
class TmResult:
    seconds: float
    ok: bool
    detail: str = ""


def tm_cli(dsn: str, migrations: Path, concurrency: int, log_path: Path) -> TmResult:
    cmd = [
        sys.executable,
        "-m",
        "tenantmig",
        "up",
        "--dsn",
        dsn,
        "--migrations",
        str(migrations),
        "--concurrency",
        str(concurrency),
        "--log-format",
        "json",
    ]
    with log_path.open("w", encoding="utf-8") as log:
        t0 = time.perf_counter()
        # cwd: a folder without tenantmig.toml/pyproject.toml, so no config file is picked up
        proc = subprocess.run(
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            check=False,
            cwd=log_path.parent,
        )
        seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        return TmResult(seconds, False, f"exit {proc.returncode}; output tail:\n{tail}")
    return TmResult(seconds, True)


_logging_configured = False


def _configure_api_logging(log_path: Path) -> None:
    """What a CLI would do: INFO and up, as JSON lines, to a file (not our stdout)."""
    global _logging_configured
    if _logging_configured:
        return
    import logging

    import structlog

    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso"),
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.INFO),
        logger_factory=structlog.PrintLoggerFactory(log_path.open("a", encoding="utf-8")),
        cache_logger_on_first_use=False,
    )
    _logging_configured = True


async def _tm_api_async(dsn: str, migrations: Path, concurrency: int) -> TmResult:
    from tenantmig import Engine

    t0 = time.perf_counter()
    async with Engine(dsn, migrations=migrations, concurrency=concurrency) as engine:
        report = await engine.upgrade()
    seconds = time.perf_counter() - t0
    if not report.ok:
        failed = report.failed[:3]
        detail = "; ".join(f"{o.tenant} V{o.failing_version}: {o.message}" for o in failed)
        return TmResult(seconds, False, f"{report.counts()} {detail}")
    return TmResult(seconds, True)


def tm_api(
    dsn: str, migrations: Path, concurrency: int, log_path: Path, profile_path: Path | None = None
) -> TmResult:
    _configure_api_logging(log_path)
    if profile_path is None:
        return asyncio.run(_tm_api_async(dsn, migrations, concurrency))
    profiler = cProfile.Profile()
    profiler.enable()
    try:
        return asyncio.run(_tm_api_async(dsn, migrations, concurrency))
    finally:
        profiler.disable()
        profiler.dump_stats(profile_path)


# --- phase timing (API mode, --phases) ----------------------------------------------------


@dataclass
class PhaseTimer:
    totals: dict[str, float] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)

    def add(self, name: str, seconds: float) -> None:
        self.totals[name] = self.totals.get(name, 0.0) + seconds
        self.counts[name] = self.counts.get(name, 0) + 1

    def wrap(self, name: str, fn: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
        async def timed(*args: Any, **kwargs: Any) -> T:
            t0 = time.perf_counter()
            try:
                return await fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t0)

        return timed

    def wrap_sync(self, name: str, fn: Callable[..., T]) -> Callable[..., T]:
        def timed(*args: Any, **kwargs: Any) -> T:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(name, time.perf_counter() - t0)

        return timed


@contextlib.contextmanager
def phase_timing(timer: PhaseTimer) -> Iterator[None]:
    """Wrap the engine's phases (module attributes, from outside: tenantmig is not edited)."""
    from tenantmig import control, engine, executor, ledger

    # (owner, attribute, label, is_async); attributes the engine no longer has are skipped,
    # so this keeps working while the engine changes.
    targets: list[tuple[Any, str, str, bool]] = [
        (engine, "load_migrations", "load migrations", False),
        (engine.Engine, "pool", "pool open", True),
        (engine.Engine, "close", "pool close", True),
        (engine, "discover", "discovery", True),
        (engine, "read_histories", "history read", True),
        (engine, "make_plan", "plan", False),
        (control, "ensure_control", "control setup", True),
        (control, "start_run", "run start (runs + ledger COPY)", True),
        (executor.Executor, "run", "executor", True),
        (executor._transaction, "apply_sql", "  in-transaction apply CALLs (summed)", True),
        (executor._each, "apply", "  apply CALLs, a COMMIT per migration (summed)", True),
        (ledger.LedgerWriter, "flush", "ledger flushes (background)", True),
        (control, "finish_run", "run finish", True),
    ]
    patches: list[tuple[Any, str, Any]] = []
    for owner, name, label, is_async in targets:
        original = getattr(owner, name, None)
        if original is None:
            continue
        wrapped = timer.wrap(label, original) if is_async else timer.wrap_sync(label, original)
        patches.append((owner, name, wrapped))
    saved = [(obj, name, getattr(obj, name)) for obj, name, _ in patches]
    try:
        for obj, name, new in patches:
            setattr(obj, name, new)
        yield
    finally:
        for obj, name, old in saved:
            setattr(obj, name, old)


# --- CPU accounting -----------------------------------------------------------------------


@dataclass(frozen=True)
class CpuSnapshot:
    client: float
    server: float | None
    server_processes: int


class CpuMeter:
    """CPU seconds of this process (+ children) and of a local server's processes.

    Wall time on a busy or small machine is noisy; CPU seconds per side are steadier and
    show where the work is. The server side is the postmaster's own and reaped children's
    time plus that of its live children (backends, walwriter, ...), read from /proc.
    """

    def __init__(self, datadir: Path | None) -> None:
        self._pidfile = datadir / "postmaster.pid" if datadir is not None else None
        self._tick = os.sysconf("SC_CLK_TCK")

    def _stat(self, pid: int) -> list[str] | None:
        try:
            text = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return text.rsplit(")", 1)[1].split()  # fields from 3 (state) on

    def _children(self, pid: int) -> list[int]:
        try:
            return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
        except OSError:
            return []

    def _server(self) -> tuple[float | None, int]:
        if self._pidfile is None:
            return None, 0
        try:
            pid = int(self._pidfile.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None, 0
        fields = self._stat(pid)
        if fields is None:
            return None, 0
        # utime, stime, cutime, cstime are fields 14-17, i.e. 11-14 counted from field 3.
        ticks = sum(int(f) for f in fields[11:15])
        children = self._children(pid)
        for child in children:
            child_fields = self._stat(child)
            if child_fields is not None:
                ticks += int(child_fields[11]) + int(child_fields[12])
        return ticks / self._tick, len(children)

    def snapshot(self) -> CpuSnapshot:
        own = resource.getrusage(resource.RUSAGE_SELF)
        kids = resource.getrusage(resource.RUSAGE_CHILDREN)
        server, processes = self._server()
        client = own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
        return CpuSnapshot(client, server, processes)

    def settle(self, before: CpuSnapshot, timeout: float = 3.0) -> None:
        """Wait until the backends of the phase have exited (and been reaped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._server()[1] <= before.server_processes:
                return
            time.sleep(0.02)

    @staticmethod
    def delta(before: CpuSnapshot, after: CpuSnapshot) -> tuple[float, float | None]:
        server = (
            after.server - before.server
            if after.server is not None and before.server is not None
            else None
        )
        return after.client - before.client, server


# --- verification -------------------------------------------------------------------------

_OBJECTS = """
WITH t AS (
    SELECT oid, nspname FROM pg_catalog.pg_namespace WHERE left(nspname, length($1)) = $1
)
SELECT
    (SELECT count(*) FROM t) AS tenants,
    (SELECT count(*) FROM t JOIN pg_catalog.pg_class c
        ON c.relnamespace = t.oid AND c.relname = 'events' AND c.relkind = 'r') AS events,
    (SELECT count(*) FROM t JOIN pg_catalog.pg_class c
        ON c.relnamespace = t.oid AND c.relname = 'events_account_id_idx' AND c.relkind = 'i')
        AS events_index,
    (SELECT count(*) FROM t JOIN pg_catalog.pg_class c
        ON c.relnamespace = t.oid AND c.relname = 'accounts'
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
        WHERE a.attname = 'status') AS status_column,
    (SELECT count(*) FROM t JOIN pg_catalog.pg_class c
        ON c.relnamespace = t.oid AND c.relname = 'accounts'
        JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid AND NOT a.attisdropped
        WHERE a.attname = 'plan') AS plan_column,
    (SELECT count(*) FROM t JOIN pg_catalog.pg_constraint k
        ON k.connamespace = t.oid AND k.conname = 'accounts_email_check'
        AND NOT k.convalidated) AS check_not_valid,
    (SELECT count(*) FROM t JOIN pg_catalog.pg_class c
        ON c.relnamespace = t.oid AND c.relname = $2 AND c.relkind = 'r') AS history_tables
"""


async def verify(
    dsn: str, names: Sequence[str], *, with_history: bool, managed: bool = False
) -> list[str]:
    """Problems found (empty when every tenant has all five changes, and history if asked:
    versions 1-5, or 1-6 when *managed*)."""
    expected = list(range(1, 7 if managed else 6))
    n = len(names)
    problems: list[str] = []
    conn = await asyncpg.connect(dsn)
    try:
        row = await conn.fetchrow(_OBJECTS, PREFIX, HISTORY_TABLE)
        assert row is not None
        for key in (
            "tenants",
            "events",
            "events_index",
            "status_column",
            "plan_column",
            "check_not_valid",
        ):
            if row[key] != n:
                problems.append(f"{key}: {row[key]} of {n} tenants")
        if with_history:
            if row["history_tables"] != n:
                problems.append(f"history tables: {row['history_tables']} of {n} tenants")
            else:
                bad = 0
                for start in range(0, n, 500):
                    chunk = names[start : start + 500]
                    query = " UNION ALL ".join(
                        f"SELECT {i} AS i, array_agg(version ORDER BY version) AS v "
                        f"FROM {quote_ident(t)}.{HISTORY_TABLE}"
                        for i, t in enumerate(chunk)
                    )
                    bad += sum(
                        1 for r in await conn.fetch(query) if list(r["v"] or []) != expected
                    )
                if bad:
                    problems.append(
                        f"history not exactly versions {expected[0]}-{expected[-1]}: "
                        f"{bad} of {n} tenants"
                    )
    finally:
        await conn.close()
    return problems


# --- driver -------------------------------------------------------------------------------


@dataclass
class Cost:
    """One timed phase: wall seconds and the CPU seconds spent on each side."""

    seconds: float
    client_cpu: float
    """This process and its children (the CLI subprocess)."""
    server_cpu: float | None
    """Every process of the local PostgreSQL server; None with --dsn."""


@dataclass
class RepeatResult:
    repeat: int
    order: str
    raw: Cost
    tm: Cost
    noop: Cost
    ratio: float
    verified: bool
    problems: list[str]


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--tenants", type=int, default=1000, help="tenant schemas (default 1000)")
    p.add_argument("--concurrency", type=int, default=8, help="for both contenders (default 8)")
    p.add_argument(
        "--repeat",
        type=int,
        default=1,
        help="timed rounds on fresh databases; medians reported (default 1)",
    )
    p.add_argument(
        "--mode",
        choices=("auto", "cli", "api"),
        default="auto",
        help="run tenantmig as `python -m tenantmig up` (cli) or through "
        "tenantmig.Engine in this process (api); auto: cli if it works, else api",
    )
    p.add_argument(
        "--dsn",
        help="postgresql:// URL of a superuser/CREATEDB role on an existing "
        "server (default: start a throwaway LocalCluster)",
    )
    p.add_argument(
        "--tmpdir",
        help="where the throwaway cluster lives (default: /dev/shm if it is a writable tmpfs, "
        "else the system temp dir); see bench/README.md for why",
    )
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("--max-ratio", type=float, help="exit 1 if tenantmig/raw exceeds this (for CI)")
    p.add_argument(
        "--managed",
        action="store_true",
        help="tenants already under tenantmig: before each timed run, an untimed `up` applies "
        "a baseline V1 (so history tables exist, as on every release after the first); the "
        "five migrations are then V2-V6",
    )
    p.add_argument(
        "--phases",
        action="store_true",
        help="api mode: time the engine's phases and print the breakdown",
    )
    p.add_argument(
        "--profile", type=Path, help="api mode: write cProfile stats of the first `up` to this file"
    )
    p.add_argument(
        "--keep",
        action="store_true",
        help="do not drop the bench databases at the end (with --dsn)",
    )
    args = p.parse_args(argv)
    if args.tenants < 1 or args.concurrency < 1 or args.repeat < 1:
        p.error("--tenants, --concurrency and --repeat must be at least 1")
    return args


def choose_mode(requested: str) -> tuple[str, str]:
    """(mode, note)."""
    if requested == "api":
        return "api", "Python API (tenantmig.Engine, in process), as requested"
    why_not = probe_cli()
    if why_not is None:
        return "cli", "CLI (python -m tenantmig up, subprocess)"
    if requested == "cli":
        raise SystemExit(f"--mode cli: {why_not}")
    return "api", f"Python API (tenantmig.Engine, in process): CLI not usable ({why_not})"


def run_tm(
    mode: str,
    dsn: str,
    migrations: Path,
    concurrency: int,
    log_path: Path,
    profile_path: Path | None = None,
) -> TmResult:
    if mode == "cli":
        return tm_cli(dsn, migrations, concurrency, log_path)
    return tm_api(dsn, migrations, concurrency, log_path, profile_path)


def one_repeat(
    index: int,
    args: argparse.Namespace,
    admin_dsn: str,
    names: Sequence[str],
    migrations: Path,
    mode: str,
    workdir: Path,
    timer: PhaseTimer | None,
    meter: CpuMeter,
) -> RepeatResult:
    asyncio.run(clone_databases(admin_dsn))
    raw_dsn = dsn_with_database(admin_dsn, RAW_DB)
    tm_dsn = dsn_with_database(admin_dsn, TM_DB)
    if args.managed:
        asyncio.run(raw_baseline(raw_dsn, names, args.concurrency))
        baseline = run_tm(
            mode, tm_dsn, workdir / "baseline", args.concurrency, workdir / "baseline.log"
        )
        if not baseline.ok:
            raise SystemExit(f"baseline failed: {baseline.detail}")
    logs: list[Path] = []
    profile = args.profile if index == 0 else None
    costs: dict[str, Cost] = {}
    raw_first = index % 2 == 0

    def measured(name: str, fn: Callable[[], float]) -> None:
        asyncio.run(checkpoint(admin_dsn))
        before = meter.snapshot()
        seconds = fn()
        meter.settle(before)
        after = meter.snapshot()
        costs[name] = Cost(seconds, *meter.delta(before, after))

    def raw() -> float:
        return asyncio.run(raw_floor(raw_dsn, names, args.concurrency))

    def tm(what: str, profile_path: Path | None = None) -> Callable[[], float]:
        def go() -> float:
            # API mode logs every run to one file (structlog is configured once).
            kind = "noop" if what.startswith("no-op") else "up"
            log_path = workdir / (
                f"tenantmig-{index + 1}-{kind}.log" if mode == "cli" else "tenantmig-api.log"
            )
            if log_path not in logs:
                logs.append(log_path)
            ctx = phase_timing(timer) if timer is not None else contextlib.nullcontext()
            with ctx:
                result = run_tm(mode, tm_dsn, migrations, args.concurrency, log_path, profile_path)
            if not result.ok:
                raise SystemExit(f"{what} failed: {result.detail}")
            return result.seconds

        return go

    def do_raw() -> None:
        measured("raw", raw)

    def do_tm() -> None:
        measured("tm", tm("tenantmig up", profile))
        measured("noop", tm("no-op tenantmig up"))

    for step in (do_raw, do_tm) if raw_first else (do_tm, do_raw):
        step()

    problems = [f"{RAW_DB}: {p}" for p in asyncio.run(verify(raw_dsn, names, with_history=False))]
    problems += [
        f"{TM_DB}: {p}"
        for p in asyncio.run(verify(tm_dsn, names, with_history=True, managed=args.managed))
    ]
    if problems:
        for log in logs:
            lines = log.read_text(errors="replace").splitlines() if log.exists() else []
            problems.append(f"tail of {log.name} ({len(lines)} lines):")
            problems.extend("    " + line[:300] for line in lines[-15:])
    return RepeatResult(
        repeat=index + 1,
        order="raw, tm" if raw_first else "tm, raw",
        raw=costs["raw"],
        tm=costs["tm"],
        noop=costs["noop"],
        ratio=costs["tm"].seconds / costs["raw"].seconds,
        verified=not problems,
        problems=problems,
    )


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _cpu(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{median(known):.2f}" if known else "n/a"


def print_cpu(results: list[RepeatResult], label: str) -> None:
    """CPU seconds per side: steadier than wall time on a small or busy machine."""
    print(f"\n{label}CPU seconds (client = this process + the CLI subprocess):")
    rows = [["", "wall s", "client CPU s", "server CPU s", "total CPU s"]]
    for name, attr in (("raw", "raw"), ("tenantmig", "tm"), ("no-op", "noop")):
        costs: list[Cost] = [getattr(r, attr) for r in results]
        totals: list[float | None] = [
            c.client_cpu + c.server_cpu if c.server_cpu is not None else None for c in costs
        ]
        rows.append(
            [
                name,
                f"{median([c.seconds for c in costs]):.2f}",
                _cpu([c.client_cpu for c in costs]),
                _cpu([c.server_cpu for c in costs]),
                _cpu(totals),
            ]
        )
    print_table(rows)


def filesystem_type(path: Path) -> str:
    """The type of the file system holding *path* (from /proc/mounts), e.g. tmpfs, ext4."""
    best, kind = "", "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/mounts").read_text().splitlines():
            fields = line.split()
            if len(fields) >= 3:
                mount = fields[1]
                inside = str(path) == mount or str(path).startswith(mount.rstrip("/") + "/")
                if inside and len(mount) > len(best):
                    best, kind = mount, fields[2]
    return kind


def cluster_tmpdir(requested: str | None) -> str | None:
    """Default: tmpfs. On ext4, creating files soon after many were deleted (a dropped
    database) is several times slower at random (ext4_create -> recently_deleted), which
    swamps the difference being measured; every CREATE TABLE/INDEX creates files."""
    if requested:
        return requested
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and filesystem_type(shm) == "tmpfs":
        return str(shm)
    return None


def _quiet_logging() -> None:
    """Keep LocalCluster's debug events off our output (API mode reconfigures later)."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _quiet_logging()
    mode, mode_note = choose_mode(args.mode)
    if mode == "cli" and (args.phases or args.profile):
        raise SystemExit("--phases and --profile need --mode api")
    names = tenant_names(args.tenants)
    cluster: Any = None
    if args.dsn:
        admin_dsn = args.dsn
    else:
        from tenantmig._cluster import LocalCluster

        tmpdir = cluster_tmpdir(args.tmpdir)
        tempfile.tempdir = tmpdir  # LocalCluster makes its directory in tempfile.gettempdir()
        cluster = LocalCluster()
        t0 = time.perf_counter()
        cluster.start()
        tempfile.tempdir = None
        print(
            f"cluster started in {time.perf_counter() - t0:.1f}s ({cluster.dsn}, "
            f"data in {cluster.datadir}, {filesystem_type(cluster.datadir)})"
        )
        admin_dsn = cluster.dsn
    try:
        machine = asyncio.run(machine_info(admin_dsn))
        print(
            f"machine: {machine['nproc']} CPUs, {machine['ram_gib']} GiB RAM, "
            f"Python {machine['python']}, {machine['postgres'].split(' on ')[0]}"
        )
        print(f"tenantmig run through: {mode_note}")
        if mode == "cli":
            compile_bytecode()
        startup = cli_startup_seconds() if mode == "cli" else None
        if startup is not None:
            print(f"CLI startup (python -m tenantmig --help): {startup:.2f}s")

        t0 = time.perf_counter()
        asyncio.run(build_template(admin_dsn, names))
        print(f"template with {len(names)} tenants built in {time.perf_counter() - t0:.1f}s")

        timer = PhaseTimer() if args.phases else None
        meter = CpuMeter(cluster.datadir if cluster is not None else None)
        results: list[RepeatResult] = []
        with tempfile.TemporaryDirectory(prefix="tenantmig-bench-") as tmp:
            workdir = Path(tmp)
            migrations = workdir / "migrations"
            write_migrations(migrations, managed=args.managed)
            write_baseline(workdir / "baseline")
            for index in range(args.repeat):
                load = os.getloadavg()[0]
                r = one_repeat(
                    index, args, admin_dsn, names, migrations, mode, workdir, timer, meter
                )
                results.append(r)
                print(
                    f"repeat {r.repeat} ({r.order}, load {load:.1f}): "
                    f"raw {r.raw.seconds:.2f}s, tenantmig {r.tm.seconds:.2f}s, "
                    f"ratio {r.ratio:.2f}, no-op {r.noop.seconds:.2f}s, "
                    f"{'verified' if r.verified else 'VERIFICATION FAILED'}"
                )
                for problem in r.problems:
                    print(f"  ! {problem}")
        if not args.keep:
            for name in (RAW_DB, TM_DB, TEMPLATE_DB):
                asyncio.run(drop_database(admin_dsn, name))
    finally:
        if cluster is not None:
            cluster.stop()

    raw = median([r.raw.seconds for r in results])
    tm = median([r.tm.seconds for r in results])
    noop = median([r.noop.seconds for r in results])
    ratio = median([r.ratio for r in results])
    label = "median " if args.repeat > 1 else ""
    print()
    print_table(
        [
            [
                "tenants",
                "concurrency",
                f"{label}raw s",
                f"{label}tenantmig s",
                f"{label}ratio",
                f"{label}no-op s",
                "mode",
            ],
            [
                str(args.tenants),
                str(args.concurrency),
                f"{raw:.2f}",
                f"{tm:.2f}",
                f"{ratio:.2f}",
                f"{noop:.2f}",
                mode + (", managed" if args.managed else ""),
            ],
        ]
    )
    if args.repeat > 1:
        print("(ratio: median of the per-repeat ratios)")
    print_cpu(results, label)
    if timer is not None:
        print("\nphases (API mode, summed over the timed `up` runs and the no-op runs):")
        for name, total in timer.totals.items():
            print(f"  {name:48s} {total:8.3f}s  ({timer.counts[name]} calls)")
    if args.profile:
        print(f"\ncProfile of the first `up`: {args.profile} (top 15 by cumulative time)")
        pstats.Stats(str(args.profile)).sort_stats("cumulative").print_stats(15)

    verified = all(r.verified for r in results)
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "machine": machine,
                    "arguments": {
                        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
                    },
                    "mode": mode,
                    "mode_note": mode_note,
                    "cli_startup_seconds": startup,
                    "repeats": [asdict(r) for r in results],
                    "median": {
                        "raw_seconds": raw,
                        "tm_seconds": tm,
                        "noop_seconds": noop,
                        "ratio": ratio,
                    },
                    "phases": timer.totals if timer is not None else None,
                    "verified": verified,
                },
                indent=2,
            )
            + "\n",
            encoding="utf-8",
        )
    if not verified:
        print("verification FAILED")
        return 2
    if args.max_ratio is not None and ratio > args.max_ratio:
        print(f"ratio {ratio:.2f} exceeds --max-ratio {args.max_ratio}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
