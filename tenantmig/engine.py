"""The engine: config -> source -> discovery -> plan -> executor -> ledger -> report.

The command line and the Python API are thin layers over :class:`Engine`.
"""

from __future__ import annotations

import contextlib
import re
import secrets
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

import anyio
import asyncpg
import structlog

from . import control
from ._exceptions import (
    ConfigError,
    DatabaseUnavailable,
    DriftError,
    LintError,
    TargetError,
    TenantmigError,
)
from ._sql import quote_ident, redact_dsn, scrub
from .discovery import (
    Targeting,
    check_control_schema,
    discover,
    existing,
    is_reserved,
    listed,
)
from .durations import format_ms, parse_duration_ms
from .executor import ExecOptions, Executor, OutcomeCallback, TenantOutcome
from .history import read_histories
from .ledger import LedgerWriter, persistently
from .lint import Finding, blocking, lint_migrations
from .outcome import Direction, OutcomeStatus
from .plan import Plan, TenantPlan, make_plan, plan_down
from .report import Report, Status, TenantStatus
from .source import MigrationSet, load_migrations

log = structlog.get_logger("tenantmig")

_SPARE_IDLE = 2.0
"""Seconds an idle pooled connection beyond ``concurrency`` stays open."""

_CONNECT_ERRORS = (
    OSError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    asyncpg.InternalClientError,
    TimeoutError,
)


@contextlib.contextmanager
def _refused(what: str) -> Iterator[None]:
    """A server error in tenantmig's own queries before any tenant is touched (a missing
    privilege, most often) is the database refusing the command, not a tenant's failure."""
    try:
        yield
    except asyncpg.PostgresError as exc:
        raise _refusal(what, exc) from exc
    except BaseExceptionGroup as group:  # from a task group (history reads)
        matched, _rest = group.split(asyncpg.PostgresError)
        if matched is None:
            raise
        first: BaseException = matched
        while isinstance(first, BaseExceptionGroup):
            first = first.exceptions[0]
        raise _refusal(what, first) from group


def _refusal(what: str, exc: BaseException) -> DatabaseUnavailable:
    sqlstate = getattr(exc, "sqlstate", None)
    return DatabaseUnavailable(
        f"{what}: {exc.__class__.__name__}: {exc} (SQLSTATE {sqlstate}); nothing was migrated"
    )


_UNPARSABLE_DSN = (
    "cannot parse the DSN {}: it must be a postgresql:// URL whose user name and password "
    "have / ? # @ : percent-encoded (/ as %2F, ? as %3F, # as %23, @ as %40, : as %3A), "
    "with a numeric port"
)


def _authority(dsn: str) -> str:
    """The user:password@host:port part of a URL DSN."""
    rest = dsn.split("://", 1)[-1]
    return re.split(r"[/?#]", rest, maxsplit=1)[0]


def new_run_id() -> str:
    """Sortable and unique enough across runners: UTC time plus random bits."""
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(3)


def _ms(value: str | int | float | None, default: int) -> int:
    if value is None:
        return default
    try:
        return parse_duration_ms(value if isinstance(value, str) else f"{float(value):f}s")
    except ValueError as exc:
        raise ConfigError(f"lock_timeout: {exc}") from None


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
        concurrency: int = 8,
        lock_timeout: str | float | None = "5s",
        retries: int = 3,
        prefix: str = "tenant_",
        control_schema: str = "tenantmig",
        atomic_tenant: bool = False,
        max_failures: int | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_run_start: Callable[[int], None] | None = None,
        retry_wait: tuple[float, float] = (0.1, 5.0),
        shared_schemas: Sequence[str] = (),
        lint: bool = True,
        pgbouncer: bool = False,
    ) -> None:
        if (dsn is None) == (pool is None):
            raise TypeError("give Engine either a dsn or a pool")
        if concurrency < 1:
            raise TenantmigError("concurrency must be at least 1")
        self.dsn = dsn
        self._pool = pool
        self._owns_pool = pool is None
        self.migrations = (
            migrations if isinstance(migrations, MigrationSet) else load_migrations(migrations)
        )
        self.prefix = prefix
        self.control_schema = control_schema
        self.shared_schemas = tuple(shared_schemas)
        self.lint = lint
        self.pgbouncer = pgbouncer
        self._findings: list[Finding] | None = None
        check_control_schema(control_schema)
        self.options = ExecOptions(
            concurrency=concurrency,
            lock_timeout_ms=_ms(lock_timeout, 0),
            retries=retries,
            atomic_tenant=atomic_tenant,
            max_failures=max_failures,
            control_schema=control_schema,
            retry_initial_wait=retry_wait[0],
            retry_max_wait=retry_wait[1],
            session=not pgbouncer,
        )
        self.on_outcome = on_outcome
        self.on_run_start = on_run_start
        self._executor: Executor | None = None
        self._stop_requested = False

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
            # standard_conforming_strings: render() escapes {{schema}} inside '...' for it
            # (the server default since 9.1; PgBouncer tracks it per client).
            settings = {"application_name": "tenantmig", "standard_conforming_strings": "on"}
            if not self.pgbouncer:
                # Every query of ours is schema-qualified; migrations must be too. (Through
                # PgBouncer these are set per transaction by the apply procedure instead.)
                settings["search_path"] = ""
                settings["lock_timeout"] = format_ms(self.options.lock_timeout_ms)
            if _authority(self.dsn).count("@") > 1:
                # asyncpg would take the host to be what follows the first @ (and fail to
                # resolve "ss@db.internal"), a message that hides the real problem.
                raise ConfigError(_UNPARSABLE_DSN.format(redact_dsn(self.dsn)))
            try:
                self._pool = await asyncpg.create_pool(
                    self.dsn,
                    # The workers' connections are opened up front: backend start-ups
                    # belong before the fan-out. One more only while something needs it
                    # (the ledger, when no tenant finishes for a while), closed once idle:
                    # a connected backend, even an idle one, pays for every catalog change
                    # the others make (see ledger).
                    min_size=self.options.concurrency,
                    max_size=self.options.concurrency + 1,
                    max_inactive_connection_lifetime=_SPARE_IDLE,
                    server_settings=settings,
                    # PgBouncer in transaction mode cannot keep named prepared statements.
                    statement_cache_size=0 if self.pgbouncer else 100,
                )
            except _CONNECT_ERRORS as exc:
                raise DatabaseUnavailable(
                    f"cannot connect to {redact_dsn(self.dsn)}: "
                    f"{scrub(str(exc) or type(exc).__name__, [self.dsn])}"
                ) from None
            except ValueError:
                # asyncpg's message quotes the piece it failed on, which may be part of
                # the password: say only what to check.
                raise ConfigError(_UNPARSABLE_DSN.format(redact_dsn(self.dsn))) from None
        return self._pool

    async def close(self, *, wait: bool = True) -> None:
        """Close the engine's own pool (an application's pool is left alone).

        With ``wait=False`` each connection still says goodbye (the protocol's Terminate
        message), but the server's ending of the backend is not waited for: for a process
        about to exit, where that wait (about 25 ms for 8 connections) is all it does."""
        if self._pool is not None and self._owns_pool:
            if wait:
                await self._pool.close()
            else:
                self._pool.terminate()
            self._pool = None

    def request_stop(self) -> None:
        """Start no new tenant (e.g. on SIGINT); running ones finish and are recorded."""
        self._stop_requested = True
        if self._executor is not None:
            self._executor.stop()

    # --- reading --------------------------------------------------------------------

    async def tenants(
        self,
        tenants: Iterable[str] | None = None,
        *,
        exclude: Iterable[str] = (),
        prefix: str | None = None,
    ) -> list[str]:
        """The targeted tenant schemas (explicit names must exist)."""
        targeting = Targeting(
            tenants=None if tenants is None else tuple(tenants),
            prefix=self.prefix if prefix is None else prefix,
            exclude=tuple(exclude),
        )
        pool = await self.pool()
        with _refused("discovering tenant schemas"):
            async with pool.acquire() as conn:
                return await discover(conn, targeting, control_schema=self.control_schema)

    def _check_target(self, target: int | None) -> None:
        if target is not None and target != 0 and target not in self.migrations.by_version():
            raise TargetError(f"no migration has version {target}")

    def check_safety(self) -> list[Finding]:
        """Lint the migrations (once); raise :class:`LintError` on a finding no
        ``tenantmig:allow`` accepts. Returns the accepted findings, for the record."""
        if self._findings is None:
            self._findings = (
                lint_migrations(self.migrations, shared_schemas=self.shared_schemas)
                if self.lint else []
            )
        unsafe = blocking(self._findings)
        if unsafe:
            raise LintError(list(unsafe))
        return [f for f in self._findings if f.allowed is not None]

    async def plan(
        self,
        tenants: Iterable[str] | None = None,
        *,
        target: int | None = None,
        exclude: Iterable[str] = (),
        prefix: str | None = None,
    ) -> Plan:
        """What :meth:`upgrade` would do; touches nothing. Refuses unsafe migrations."""
        self.check_safety()
        return await self._plan(tenants, target=target, exclude=exclude, prefix=prefix)

    async def _plan(
        self,
        tenants: Iterable[str] | None = None,
        *,
        target: int | None = None,
        exclude: Iterable[str] = (),
        prefix: str | None = None,
    ) -> Plan:
        self._check_target(target)
        names = await self.tenants(tenants, exclude=exclude, prefix=prefix)
        histories = await self._histories(names)
        return make_plan(self.migrations, histories, names, target)

    async def _histories(self, names: Sequence[str]) -> dict[str, dict[int, str] | None]:
        with _refused("reading the tenants' histories"):
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
        plan = await self._plan(tenants, exclude=exclude, prefix=prefix)
        pool = await self.pool()
        with _refused("reading the control schema"):
            async with pool.acquire() as conn:
                last_run = await control.read_run(conn, self.control_schema, None)
                failures = (
                    await control.latest_failures(conn, self.control_schema) if last_run
                    else {}
                )
        by_version = Counter(t.current for t in plan.tenants)
        return Status(
            head=self.migrations.head,
            tenants=tuple(
                TenantStatus(
                    tenant=t.tenant,
                    current=t.current,
                    pending=tuple(m.version for m in t.pending),
                    drifted=t.drifted,
                    unknown=t.unknown,
                    last_failure=failures.get(t.tenant),
                )
                for t in plan.tenants
            ),
            last_run=last_run,
            by_version=dict(by_version),
        )

    async def ledger(
        self, run_id: str | None = None
    ) -> tuple[control.RunRecord, list[control.LedgerRow]]:
        """A run (default: the latest) and its ledger rows."""
        pool = await self.pool()
        with _refused("reading the control schema"):
            async with pool.acquire() as conn:
                run = await control.read_run(conn, self.control_schema, run_id)
                if run is None:
                    raise TargetError(f"no run {run_id}" if run_id else "no run recorded yet")
                return run, await control.read_ledger(conn, self.control_schema, run.run_id)

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
            _check_plan(plan, tenants, target)
        else:
            plan = await self.plan(tenants, target=target, exclude=exclude, prefix=prefix)
        self.refuse_drift(plan)
        return await self._execute(
            plan.tenants, plan.target, "up", command, arguments, resumed_from, t0
        )

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
        self.check_safety()
        self._check_target(target)
        names = await self.tenants(tenants, exclude=exclude, prefix=prefix)
        histories = await self._histories(names)
        plans = [plan_down(n, self.migrations, histories.get(n), target) for n in names]
        self.refuse_drift(Plan(target, tuple(plans)))
        # A tenant that would need an undo that does not exist is left as it is and
        # fails; the others go down.
        refused: dict[str, TenantOutcome] = {}
        for p in plans:
            missing = next((m for m in p.pending if m.down is None), None)
            if missing is not None:
                now = datetime.now(UTC)
                refused[p.tenant] = TenantOutcome(
                    p.tenant, OutcomeStatus.FAILED, p.current, p.current, target,
                    failing_version=missing.version,
                    message=f"no undo for version {missing.version} ({missing.filename} has "
                            f"no U{missing.version} file or down()): cannot go down to "
                            f"{target}; nothing was undone in this tenant",
                    started_at=now, finished_at=now,
                )
        return await self._execute(plans, target, "down", "down", arguments, resumed_from, t0,
                                   refused)

    async def resume(self, run_id: str | None = None) -> Report:
        """Re-run the failed and unfinished tenants of a run, to that run's target."""
        self.check_safety()
        pool = await self.pool()
        with _refused("reading the control schema"):
            async with pool.acquire() as conn:
                run = await control.read_run(conn, self.control_schema, run_id)
                if run is None:
                    raise TargetError(f"no run {run_id}" if run_id else "no run recorded yet")
                rows = await control.read_ledger(conn, self.control_schema, run.run_id)
        todo = [r.tenant for r in rows if r.status in ("failed", "pending")]
        arguments = {"resume": run.run_id}
        if not todo:
            return Report("resume", None, run.target, (), 0.0)
        async with pool.acquire() as conn:
            present = await existing(conn, todo)
        gone = [t for t in todo if t not in present]
        todo = [t for t in todo if t in present]
        if gone:
            if not todo:
                # Not "nothing to resume" (exit 0): the run did leave these unfinished.
                raise TargetError(f"run {run.run_id}: its unfinished tenant schema(s) no "
                                  f"longer exist (dropped or renamed?): {listed(gone)}")
            log.warning("unfinished tenants of the run no longer exist", run_id=run.run_id,
                        tenants=gone)
        if run.command == "down":
            if run.target is None:
                raise TargetError(f"run {run.run_id} has no target")
            report = await self.downgrade(run.target, todo, arguments=arguments,
                                          resumed_from=run.run_id)
        else:
            report = await self.upgrade(todo, target=run.target, arguments=arguments,
                                        command="resume", resumed_from=run.run_id)
        return report

    def refuse_drift(self, plan: Plan) -> None:
        """Raise :class:`DriftError` naming the changed files and their tenants, if *plan*
        shows drift."""
        drift = plan.drift()
        if not drift:
            return
        known = self.migrations.by_version()
        lines = []
        for version, names in sorted(drift.items()):
            what = (
                f"{known[version].filename} changed after it was applied"
                if version in known
                else f"version {version} was applied but has no file"
            )
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5
                                             else "")
            lines.append(f"{what} (tenants: {shown})")
        raise DriftError("drift: " + "; ".join(lines), drift)

    async def _execute(
        self,
        plans: Sequence[TenantPlan],
        target: int | None,
        direction: str,
        command: str,
        arguments: dict[str, Any] | None,
        resumed_from: str | None,
        t0: float,
        refused: dict[str, TenantOutcome] | None = None,
    ) -> Report:
        """Run *plans*; the tenants in *refused* are not touched and end as their
        outcome says (failed), in the report and the ledger alike."""
        refused = refused or {}
        work = [p for p in plans if p.pending and p.tenant not in refused]
        skipped = {
            p.tenant: TenantOutcome(p.tenant, OutcomeStatus.SKIPPED, p.current, p.current, target)
            for p in plans
            if not p.pending
        }
        if not work and not refused:
            log.info("nothing to do", tenants=len(plans), target=target)
            return Report(command, None, target, tuple(skipped.values()),
                          time.perf_counter() - t0)
        run_steps = [(m.version, m.up if direction == "up" else m.down)
                     for p in work for m in p.pending]
        steps = {str(step.path) for _, step in run_steps if step is not None}
        if self.pgbouncer:
            sessionful = [name for _, name in sorted(
                {(v, Path(s.path).name) for v, s in run_steps
                 if s is not None and not s.transactional})]
            if sessionful:
                raise ConfigError(
                    "through PgBouncer in transaction mode only transactional migrations can "
                    "run; these hold a session (advisory lock, settings) and need a direct "
                    "connection: " + ", ".join(sessionful)
                )
        accepted = [f for f in self.check_safety() if f.path in steps]
        if accepted:
            arguments = {**(arguments or {}), "allowed": [
                {"file": f.path, "line": f.line, "rule": f.rule, "reason": f.allowed}
                for f in accepted
            ]}
        pool = await self.pool()
        with _refused(f"setting up the control schema {self.control_schema!r}"):
            async with pool.acquire() as conn:
                await control.ensure_control(conn, self.control_schema, self.prefix)
                run_id = new_run_id()
                await control.start_run(
                    conn,
                    self.control_schema,
                    run_id=run_id,
                    command=command,
                    target=target,
                    arguments=arguments or {},
                    resumed_from=resumed_from,
                    tenants=[
                        (p.tenant, "pending" if p.pending else "skipped", p.current, target)
                        for p in plans
                    ],
                )
        run_log = log.bind(run_id=run_id)
        run_log.info("run started", command=command, tenants=len(plans), work=len(work),
                     target=target, concurrency=self.options.concurrency)
        if self.on_run_start is not None:
            self.on_run_start(len(work) + len(refused))
        writer = LedgerWriter(pool, self.control_schema, run_id)
        user_callback = self.on_outcome
        callback_error: list[Exception] = []

        async def on_outcome(outcome: TenantOutcome) -> None:
            writer.add(outcome)
            if user_callback is not None:
                try:
                    result = user_callback(outcome)
                    if result is not None:
                        await result
                except Exception as exc:
                    # The application's error stops the run; it gets it back as itself.
                    callback_error.append(exc)
                    raise

        for outcome in refused.values():
            await on_outcome(outcome)

        executor = Executor(pool, self.options, run_id=run_id, on_outcome=on_outcome,
                            direction=Direction(direction), on_cancelled=writer.add,
                            between_tenants=writer.between_tenants)
        self._executor = executor
        executor.count_failures(len(refused))
        if self._stop_requested:
            executor.stop()
        status = "failed"
        try:
            async with writer:
                outcomes = await executor.run(work, target)
            by_tenant = {o.tenant: o for o in outcomes}
            ordered = tuple(by_tenant.get(p.tenant) or refused.get(p.tenant)
                            or skipped[p.tenant] for p in plans)
            report = Report(command, run_id, target, ordered, time.perf_counter() - t0,
                            interrupted=executor.stopping and self._stop_requested)
            status = ("interrupted" if report.interrupted
                      else "succeeded" if report.ok else "failed")
            return report
        except BaseException:
            status = "interrupted"
            if callback_error:
                raise callback_error[0]  # noqa: B904 - the group it came in is the context
            raise
        finally:
            self._executor = None
            self._stop_requested = False  # a stop ends this run, not the engine

            async def finish() -> None:
                async with pool.acquire() as conn:
                    await control.finish_run(conn, self.control_schema, run_id, status)

            with anyio.CancelScope(shield=True):
                error = await persistently(finish)
            if error is not None:
                run_log.warning("could not record the end of the run", error=str(error))
            run_log.info("run finished", status=status)


def _check_plan(plan: Plan, tenants: Iterable[str] | None, target: int | None) -> None:
    """A plan handed to ``upgrade`` must be the one its other arguments ask for."""
    if target is not None and plan.target != target:
        raise ValueError(f"upgrade(target={target}) was given a plan to {plan.target}")
    if tenants is not None:
        asked = sorted(set(tenants))
        planned = sorted({p.tenant for p in plan.tenants})
        if asked != planned:
            raise ValueError(f"upgrade() was given a plan for other tenants than the "
                             f"{len(asked)} it names")


async def provision(
    pool_or_dsn: Any,
    schema: str,
    *,
    migrations: str | Path | MigrationSet = "migrations",
    control_schema: str = "tenantmig",
    lock_timeout: str | float | None = "5s",
    retries: int = 3,
    shared_schemas: Sequence[str] = (),
    lint: bool = True,
    pgbouncer: bool = False,
) -> Report:
    """Create tenant *schema* if needed and bring it to the latest version.

    Safe to call while an ``up`` runs: both take the tenant's advisory lock and
    re-read its history under it, so every migration is applied exactly once. The
    migrations are checked (:class:`LintError`) before the schema is created.
    """
    if is_reserved(schema, control_schema):
        raise TargetError(f"not a tenant schema: {schema!r}")
    dsn = pool_or_dsn if isinstance(pool_or_dsn, str) else None
    pool = None if dsn is not None else pool_or_dsn
    engine = Engine(dsn, pool=pool, migrations=migrations, concurrency=1,
                    control_schema=control_schema, lock_timeout=lock_timeout, retries=retries,
                    shared_schemas=shared_schemas, lint=lint, pgbouncer=pgbouncer)
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
