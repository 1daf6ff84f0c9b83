"""The engine: config -> source -> discovery -> plan -> executor -> ledger -> report.

The command line and the Python API are thin layers over :class:`Engine`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from pathlib import Path
from types import TracebackType
from typing import Any, Unpack

import structlog

from . import baseline, control
from ._exceptions import (
    ConfigError,
    TargetError,
)
from ._pool import open_pool
from ._safety import SafetyCheck, tenants_catalog
from ._sql import quote_ident
from .discovery import (
    Targeting,
    discover,
    is_reserved,
)
from .executor import ExecOptions, OutcomeCallback
from .history import read_histories
from .ledger import LedgerRow, RunRecord, prune, status_facts
from .lint import Catalog, Finding
from .options import Options, Settings, retention_ms
from .outcome import Direction
from .plan import (
    Plan,
    check_plan,
    drift_error,
    make_plan,
    missing_undo,
    plan_down,
    plan_tenant,
)
from .report import Report, Status
from .runs import (
    RunHost,
    RunRequest,
    StopSwitch,
    baseline_run,
    database_refusal,
    execute,
    run_and_ledger,
    unfinished,
)
from .source import MigrationSet, load_migrations

log = structlog.get_logger("tenantmig")

class Engine:
    """Migrates the tenant schemas of one database.

    Give it a DSN (it opens and closes its own pool) or an application's asyncpg
    ``pool`` (it never closes it). Use ``async with Engine(...)`` or call
    :meth:`close` when done. ``on_run_start(n)`` is called when a run starts with
    ``n`` tenants to migrate, ``on_outcome(outcome)`` as each of them finishes.
    """

    def __init__(
        self,
        dsn: str | None = None,
        *,
        pool: Any = None,
        migrations: str | Path | MigrationSet = "migrations",
        shared_migrations: str | Path | MigrationSet | None = None,
        options: Options | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_run_start: Callable[[int], None] | None = None,
        **settings: Unpack[Settings],
    ) -> None:
        """*options* (default: :class:`Options` ``()``) with *settings* in place of the
        ones they name: ``Engine(dsn, concurrency=16, lock_timeout="2s")``.
        *shared_migrations*: the shared schema's own (``shared_target``), applied once,
        before any tenant, by ``upgrade``."""
        if (dsn is None) == (pool is None):
            raise TypeError("give Engine either a dsn or a pool")
        self.settings = (options or Options()).updated(settings)
        self.dsn = dsn
        self._pool = pool
        self._owns_pool = pool is None
        self.migrations = (
            migrations if isinstance(migrations, MigrationSet) else load_migrations(migrations)
        )
        self.shared_migrations = (
            shared_migrations if isinstance(shared_migrations, MigrationSet | None)
            else load_migrations(shared_migrations)
        )
        self._folder = str(Path(self.migrations.directory).resolve())
        self.prefix = self.settings.prefix
        self.control_schema = self.settings.control_schema
        # With shared migrations, the schema they change is one the tenants may use.
        target = self.settings.shared_target
        self.shared_schemas = self.settings.shared_schemas + (
            (target,) if shared_migrations is not None
            and target not in self.settings.shared_schemas else ())
        self._safety = SafetyCheck(self.migrations, self.shared_migrations,
                                   self.shared_schemas, self.settings)
        self.options = ExecOptions.from_options(self.settings, self.shared_schemas)
        self.on_outcome = on_outcome
        self.on_run_start = on_run_start
        self._stop = StopSwitch()

    # --- lifecycle ------------------------------------------------------------------

    async def __aenter__(self) -> Engine:
        await self.pool()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def pool(self) -> Any:
        """The connection pool, opened on first use."""
        if self._pool is None:
            assert self.dsn is not None
            self._pool = await open_pool(self.dsn, self.settings)
        return self._pool

    async def close(self, *, wait: bool = True) -> None:
        """Close the engine's own pool (an application's pool is left alone).

        With ``wait=False`` each connection still says goodbye (the protocol's Terminate
        message), but the server's ending of the backend is not waited for: for a process
        about to exit, where that wait (about 25 ms for 8 connections) is all it does."""
        if self._pool is not None and self._owns_pool:
            pool, self._pool = self._pool, None
            if wait:
                await pool.close()
            else:
                pool.terminate()

    def request_stop(self) -> None:
        """Start no new tenant (e.g. on SIGINT); running ones finish and are recorded."""
        self._stop.request()

    # --- reading --------------------------------------------------------------------

    async def tenants(
        self,
        tenants: Iterable[str] | None = None,
        *,
        exclude: Iterable[str] = (),
        prefix: str | None = None,
    ) -> list[str]:
        """The targeted tenant schemas (explicit names must exist)."""
        targeting = Targeting(None if tenants is None else tuple(tenants),
                              self.prefix if prefix is None else prefix, tuple(exclude))
        with database_refusal("discovering tenant schemas"):
            async with (await self.pool()).acquire() as conn:
                return await discover(conn, targeting, control_schema=self.control_schema)

    def _check_target(self, target: int | None) -> None:
        if target is not None and target != 0 and target not in self.migrations.by_version():
            raise TargetError(f"no migration has version {target}")

    def check_safety(self) -> list[Finding]:
        """Lint the migrations (once); raise :class:`LintError` on a finding no
        ``tenantmig:allow`` accepts. Returns the accepted findings, for the record.

        Without a database, the tables no migration created are unknown; once
        :meth:`plan`, :meth:`upgrade`, :meth:`downgrade` or :meth:`resume` has judged them
        with the targeted tenants' catalog, this gives that verdict."""
        return self._safety.check()

    async def catalog(self, names: Sequence[str]) -> Catalog:
        """The tables and columns tenants *names* hold, read in one query."""
        return await tenants_catalog(await self.pool(), names)

    async def _check_safety_live(self, names: Sequence[str]) -> list[Finding]:
        return await self._safety.check_with(await self.pool(), names)

    async def plan(
        self,
        tenants: Iterable[str] | None = None,
        *,
        target: int | None = None,
        exclude: Iterable[str] = (),
        prefix: str | None = None,
    ) -> Plan:
        """What :meth:`upgrade` would do; touches nothing. Refuses unsafe migrations, judged
        with the catalog of the targeted tenants."""
        self._check_target(target)
        names = await self.tenants(tenants, exclude=exclude, prefix=prefix)
        await self._check_safety_live(names)
        return await self._plan_for(names, target)

    async def _plan_for(self, names: list[str], target: int | None) -> Plan:
        shared = self.settings.shared_target if self.shared_migrations is not None else None
        histories = await self._histories([*names, *([shared] if shared else [])])
        plan = make_plan(self.migrations, histories, names, target)
        if shared is not None and self.shared_migrations is not None:
            plan = replace(plan, shared=plan_tenant(shared, self.shared_migrations,
                                                    histories[shared]))
        return plan

    async def _histories(self, names: Sequence[str]) -> dict[str, dict[int, str] | None]:
        with database_refusal("reading the tenants' histories"):
            return await read_histories(await self.pool(), names,
                                        concurrency=self.options.concurrency,
                                        session=self.options.session)

    async def status(
        self,
        tenants: Iterable[str] | None = None,
        *,
        exclude: Iterable[str] = (),
        prefix: str | None = None,
    ) -> Status:
        """Versions across tenants, pending and drifted, and failures of the latest run."""
        # Planned whatever the linter says: status shows where tenants stand even when the
        # next migration would be refused.
        plan = await self._plan_for(await self.tenants(tenants, exclude=exclude,
                                                       prefix=prefix), None)
        with database_refusal("reading the control schema"):
            async with (await self.pool()).acquire() as conn:
                last_run, failures, adopted = await status_facts(
                    conn, self.control_schema, [t.tenant for t in plan.tenants])
        return Status.of(plan, self.migrations.head, last_run, failures, adopted,
                         None if self.shared_migrations is None
                         else self.shared_migrations.head)

    async def ledger(
        self, run_id: str | None = None
    ) -> tuple[RunRecord, list[LedgerRow]]:
        """A run (default: the latest) and its ledger rows."""
        return await run_and_ledger(await self.pool(), self.control_schema, run_id)

    # --- changing -------------------------------------------------------------------

    async def upgrade(
        self,
        tenants: Iterable[str] | None = None,
        *,
        target: int | None = None,
        exclude: Iterable[str] = (),
        prefix: str | None = None,
        arguments: dict[str, Any] | None = None,
        command: str = "up",
        resumed_from: str | None = None,
        plan: Plan | None = None,
    ) -> Report:
        """Bring the targeted tenants to *target* (default: the latest version).

        *plan*, from :meth:`plan` with the same arguments, saves reading every history
        again (what another runner applied meanwhile is found under each tenant's lock).
        The plan then says which tenants and which target: *tenants* or *target* given
        as well must agree with it (``ValueError``); *exclude* and *prefix* are not
        looked at.
        """
        t0 = time.perf_counter()
        if plan is not None:
            check_plan(plan, tenants, target)
        else:
            plan = await self.plan(tenants, target=target, exclude=exclude, prefix=prefix)
        self.refuse_drift(plan)
        return await self._execute(RunRequest(
            plan.tenants, plan.target, Direction.UP, command, arguments or {}, resumed_from,
            t0, refused={}, shared=plan.shared))

    async def downgrade(
        self,
        target: int,
        tenants: Iterable[str] | None = None,
        *,
        exclude: Iterable[str] = (),
        prefix: str | None = None,
        arguments: dict[str, Any] | None = None,
        resumed_from: str | None = None,
    ) -> Report:
        """Apply undo migrations, newest first, until each tenant is at *target*."""
        t0 = time.perf_counter()
        self._check_target(target)
        names = await self.tenants(tenants, exclude=exclude, prefix=prefix)
        await self._check_safety_live(names)
        histories = await self._histories(names)
        plans = [plan_down(n, self.migrations, histories.get(n), target) for n in names]
        self.refuse_drift(Plan(target, tuple(plans)))
        # A tenant that would need an undo that does not exist is left as it is and
        # fails; the others go down.
        refused = {p.tenant: o for p in plans if (o := missing_undo(p, target)) is not None}
        return await self._execute(RunRequest(plans, target, Direction.DOWN, "down",
                                              arguments or {}, resumed_from, t0, refused))

    async def resume(self, run_id: str | None = None) -> Report:
        """Re-run the failed and unfinished tenants of a run, to that run's target."""
        run, todo = await unfinished(await self.pool(), self.control_schema, run_id,
                                     self.settings.shared_target)
        await self._check_safety_live(todo)
        arguments = {"resume": run.run_id}
        if not todo:
            return Report("resume", None, run.target, (), 0.0)
        if run.command == Direction.DOWN:
            if run.target is None:
                raise TargetError(f"run {run.run_id} has no target")
            report = await self.downgrade(run.target, todo, arguments=arguments,
                                          resumed_from=run.run_id)
        else:
            report = await self.upgrade(todo, target=run.target, arguments=arguments,
                                        command="resume", resumed_from=run.run_id)
        return report

    async def check_baseline(
        self, version: int, tenants: Iterable[str] | None = None, *,
        exclude: Iterable[str] = (), prefix: str | None = None,
    ) -> tuple[list[str], dict[str, dict[int, str] | None]]:
        """Raise :class:`BaselineError` if :meth:`baseline` would refuse; otherwise the
        targeted tenants and their histories."""
        if version not in self.migrations.by_version():
            raise TargetError(f"no migration has version {version}")
        names = await self.tenants(tenants, exclude=exclude, prefix=prefix)
        histories = await self._histories(names)
        baseline.refuse(self.migrations.upto(version), version, names, histories)
        return names, histories

    async def baseline(
        self,
        version: int,
        tenants: Iterable[str] | None = None,
        *,
        exclude: Iterable[str] = (),
        prefix: str | None = None,
        arguments: dict[str, Any] | None = None,
    ) -> Report:
        """Adopt tenants that already hold the schema: record versions up to *version* as
        applied (today's checksums) without running them, as a ``baseline`` run in the
        ledger. Raises :class:`BaselineError`, writing nothing, when a targeted tenant's
        history already says otherwise (see :mod:`tenantmig.baseline`)."""
        t0 = time.perf_counter()
        names, histories = await self.check_baseline(version, tenants, exclude=exclude,
                                                     prefix=prefix)
        return await baseline_run(await self._host(), names, histories,
                                  self.migrations.upto(version), version, arguments or {}, t0)

    def refuse_drift(self, plan: Plan) -> None:
        """Raise :class:`DriftError` naming the changed files and their tenants, if *plan*
        shows drift."""
        error = drift_error(plan, self.migrations)
        if error is not None:
            raise error

    async def _execute(self, request: RunRequest) -> Report:
        """Make the run *request* describes (see :func:`runs.execute`)."""
        try:
            return await execute(request, await self._host(), self.check_safety)
        finally:
            self._stop = StopSwitch()  # a stop ends this run, not the engine

    async def _host(self) -> RunHost:
        return RunHost(pool=await self.pool(), options=self.options,
                       control_schema=self.control_schema, prefix=self.prefix,
                       folder=self._folder, pgbouncer=self.settings.pgbouncer, stop=self._stop,
                       on_outcome=self.on_outcome, on_run_start=self.on_run_start,
                       retention_ms=self.settings.ledger_retention_ms)

    async def prune(self, older_than: str | float) -> int:
        """Delete runs that started more than *older_than* (``"90d"``) ago from the ledger,
        with their rows; never a running run, the latest run or a baseline. Returns how
        many runs went."""
        ms = retention_ms(older_than)
        if ms is None:
            raise ConfigError("prune: give a duration such as 90d")
        pool = await self.pool()
        with database_refusal("pruning the ledger"):
            async with pool.acquire() as conn:
                pruned = await prune(conn, self.control_schema, ms)
        log.info("old runs pruned from the ledger", runs=pruned)
        return pruned


async def provision(
    pool_or_dsn: Any,
    schema: str,
    *,
    migrations: str | Path | MigrationSet = "migrations",
    options: Options | None = None,
    **settings: Unpack[Settings],
) -> Report:
    """Create tenant *schema* if needed and bring it to the latest version.

    Safe to call while an ``up`` runs: both take the tenant's advisory lock and
    re-read its history under it, so every migration is applied exactly once. The
    migrations are checked (:class:`LintError`) before the schema is created. *options*
    and *settings* are :class:`Engine`'s (one connection is enough: ``concurrency`` is 1).
    """
    merged = (options or Options()).updated(settings)
    if is_reserved(schema, merged.control_schema):
        raise TargetError(f"not a tenant schema: {schema!r}")
    dsn = pool_or_dsn if isinstance(pool_or_dsn, str) else None
    pool = None if dsn is not None else pool_or_dsn
    engine = Engine(dsn, pool=pool, migrations=migrations,
                    options=replace(merged, concurrency=1))
    try:
        engine.check_safety()
        target_pool = await engine.pool()
        async with target_pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_catalog.pg_advisory_xact_lock($1)",
                               control.tenant_lock_key(schema))
            await conn.execute(f"CREATE SCHEMA IF NOT EXISTS {quote_ident(schema)}")
        report = await engine.upgrade([schema], command="provision")
        return replace(report, command="provision")
    finally:
        await engine.close()
