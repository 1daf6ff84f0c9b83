"""The command line: parse, configure logging, call the engine, render.

Exit codes: 0 all targeted tenants at target; 1 a tenant failed or was left pending;
2 usage, configuration, load or drift error (nothing touched); 130/143 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Sequence
from typing import Any, TypeVar

import anyio
import structlog

from .. import __version__
from .._exceptions import DriftError, TargetError, TenantmigError
from .._sql import redact_dsn, scrub
from ..config import Config, load_config
from ..discovery import existing, listed, merge_tenants
from ..engine import Engine
from ..executor import TenantOutcome
from ..plan import Plan
from ..report import Report
from ..source import MigrationSet, load_migrations
from . import _render
from ._logging import configure
from ._new import add_arguments as add_new_arguments

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
_T = TypeVar("_T")
EXIT_SIGINT, EXIT_SIGTERM = 130, 143

_log = structlog.get_logger("tenantmig")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # exit 2 with one line, like the rest
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"tenantmig: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--dsn", action="append", metavar="URL",
                        help="database (repeat for a fleet); else $TENANTMIG_DSN, else config")
    common.add_argument("--migrations", metavar="DIR", help="migrations folder (migrations)")
    common.add_argument("--config", metavar="FILE",
                        help="config file (default: ./tenantmig.toml or ./pyproject.toml)")
    common.add_argument("--control-schema", metavar="NAME",
                        help="schema for runs and the ledger (tenantmig)")
    common.add_argument("--log-format", choices=("console", "json"))
    common.add_argument("--shared-schema", action="append", default=[], metavar="NAME",
                        help="a schema shared by all tenants (extensions, lookups) that "
                        "migrations may reference (repeatable)")
    common.add_argument("-v", "--verbose", action="count", default=0,
                        help="more log events on stderr (-v info, -vv debug)")

    targeting = _Parser(add_help=False)
    targeting.add_argument("--tenant", action="append", default=[], metavar="NAME",
                           help="target this tenant schema (repeatable)")
    targeting.add_argument("--tenants-file", action="append", default=[], metavar="FILE",
                           help="target the tenants listed in FILE (one per line, # comments)")
    targeting.add_argument("--prefix", metavar="P",
                           help="literal schema name prefix of tenants (tenant_)")
    targeting.add_argument("--exclude", action="append", default=[], metavar="NAME",
                           help="leave this tenant out (repeatable)")

    execution = _Parser(add_help=False)
    execution.add_argument("--concurrency", type=int, metavar="N",
                           help="tenants migrated at once (8)")
    execution.add_argument("--lock-timeout", metavar="DURATION",
                           help="lock_timeout for every migration (5s; 0 disables)")
    execution.add_argument("--retries", type=int, metavar="N",
                           help="retries of transient errors per migration (3)")
    execution.add_argument("--max-failures", type=int, metavar="N",
                           help="start no new tenant once more than N have failed")
    execution.add_argument("--atomic-tenant", action=argparse.BooleanOptionalAction, default=None,
                           help="all pending migrations of a tenant in one transaction")
    common.add_argument("--pgbouncer", action=argparse.BooleanOptionalAction, default=None,
                        help="the DSN goes through PgBouncer in transaction pooling mode")

    parser = _Parser(
        prog="tenantmig",
        description="Apply PostgreSQL migrations to every tenant schema: fast, exactly once.",
    )
    parser.add_argument("--version", action="version", version=f"tenantmig {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    up = sub.add_parser("up", parents=[common, targeting, execution],
                        help="migrate targeted tenants to the latest version (or --target)")
    up.add_argument("--target", type=int, metavar="V", help="stop at version V")
    up.add_argument("--dry-run", action="store_true", help="show the plan; touch nothing")
    up.add_argument("--json", action="store_true", help="print the report as JSON")

    down = sub.add_parser("down", parents=[common, targeting, execution],
                          help="apply undo migrations down to --target")
    down.add_argument("--target", type=int, metavar="V", required=True)
    down.add_argument("--json", action="store_true")

    plan = sub.add_parser("plan", parents=[common, targeting],
                          help="what up would do, with the SQL for one tenant")
    plan.add_argument("--target", type=int, metavar="V")
    plan.add_argument("--json", action="store_true")

    status = sub.add_parser("status", parents=[common, targeting],
                            help="versions across tenants, pending, drifted, failed")
    status.add_argument("--json", action="store_true")

    resume = sub.add_parser("resume", parents=[common, execution],
                            help="re-run the failed and unfinished tenants of a run")
    resume.add_argument("run_id", nargs="?", metavar="RUN_ID", help="default: the latest run")
    resume.add_argument("--json", action="store_true")

    ledger = sub.add_parser("ledger", parents=[common], help="show a run's ledger")
    ledger.add_argument("run_id", nargs="?", metavar="RUN_ID", help="default: the latest run")
    ledger.add_argument("--json", action="store_true")

    lint = sub.add_parser("lint", parents=[common],
                          help="static safety checks of the migration files (no database)")
    lint.add_argument("--fix", action="store_true",
                      help="add missing {{schema}}. qualifiers to the SQL files (changes their "
                      "checksums: only for migrations not applied anywhere yet)")
    lint.add_argument("--list", action="store_true", help="list the rules")
    lint.add_argument("--json", action="store_true")

    new = sub.add_parser("new", parents=[common],
                         help="write the next migration file(s), optionally from a safe pattern")
    add_new_arguments(new)

    demo = sub.add_parser("demo", parents=[common],
                          help="migrate sample tenants in a throwaway local PostgreSQL")
    demo.add_argument("--tenants", type=int, default=300, metavar="N")
    demo.add_argument("--concurrency", type=int, default=8, metavar="N")
    return parser


def _config(args: argparse.Namespace) -> Config:
    return load_config(
        {
            "dsn": args.dsn,
            "migrations": args.migrations,
            "control_schema": args.control_schema,
            "log_format": args.log_format,
            "prefix": getattr(args, "prefix", None),
            "concurrency": getattr(args, "concurrency", None),
            "lock_timeout": getattr(args, "lock_timeout", None),
            "retries": getattr(args, "retries", None),
            "max_failures": getattr(args, "max_failures", None),
            "atomic_tenant": getattr(args, "atomic_tenant", None),
            "shared_schemas": args.shared_schema or None,
            "pgbouncer": args.pgbouncer,
        },
        config_file=args.config,
    )


class _Session:
    """One command's engines (one per database), signals and output."""

    def __init__(self, args: argparse.Namespace, config: Config,
                 migrations: MigrationSet) -> None:
        self.args = args
        self.config = config
        self.migrations = migrations
        self.out = _render.console()
        self.err = _render.console(stderr=True)
        self.engines: list[Engine] = []
        self._engine_for: dict[str, Engine] = {}
        # With a fleet: each database's share of the named tenants and exclusions, and
        # the plans its preflight made for up (the run uses them: one history read).
        self._targets: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {}
        self.plans: dict[str, Plan] = {}
        self.signal: int | None = None
        self.cancel_scope: anyio.CancelScope | None = None
        self.progress: _render.ProgressDisplay | None = None

    def label(self, dsn: str) -> str:
        """Which database a result is about: on the console only when there are several;
        in JSON always (a consumer should not have to know how many there were)."""
        if len(self.config.dsns) > 1 or getattr(self.args, "json", False):
            # scrubbed as well: a second line of defence for DSN shapes redaction misreads
            return scrub(redact_dsn(dsn), list(self.config.dsns))
        return ""

    def engine(self, dsn: str) -> Engine:
        if dsn in self._engine_for:
            return self._engine_for[dsn]
        engine = Engine(
            dsn,
            migrations=self.migrations,
            concurrency=self.config.concurrency,
            lock_timeout=self.config.lock_timeout_ms / 1000,
            retries=self.config.retries,
            prefix=self.config.prefix,
            control_schema=self.config.control_schema,
            atomic_tenant=self.config.atomic_tenant,
            max_failures=self.config.max_failures,
            on_outcome=self._on_outcome,
            on_run_start=self._on_run_start,
            shared_schemas=self.config.shared_schemas,
            pgbouncer=self.config.pgbouncer,
        )
        self.engines.append(engine)
        self._engine_for[dsn] = engine
        return engine

    def _on_run_start(self, tenants: int) -> None:
        if self.progress is not None:
            self.progress.add_total(tenants)

    def _on_outcome(self, outcome: TenantOutcome) -> None:
        if self.progress is not None:
            self.progress.advance(outcome)

    def _named(self) -> tuple[str, ...]:
        return merge_tenants(getattr(self.args, "tenant", []),
                             getattr(self.args, "tenants_file", []))

    def tenants(self, engine: Engine) -> list[str] | None:
        """The named tenants to target in *engine*'s database; None: all by prefix."""
        if engine.dsn in self._targets:
            return list(self._targets[engine.dsn][0]) or (None if not self._named() else [])
        return list(self._named()) or None

    def exclude(self, engine: Engine) -> list[str]:
        if engine.dsn in self._targets:
            return list(self._targets[engine.dsn][1])
        return list(getattr(self.args, "exclude", None) or [])

    async def preflight(self) -> None:
        """With a fleet, everything that would refuse the command is checked in every
        database before any of them is touched: each is reachable, each named (or
        excluded) tenant lives in one of them (each database then gets the names it
        holds), and, for up and down, no database has drift."""
        if len(self.config.dsns) < 2:
            return
        named = self._named()
        excluded = tuple(dict.fromkeys(getattr(self.args, "exclude", None) or []))
        found: dict[str, set[str]] = {}

        async def look(dsn: str) -> None:
            pool = await self.engine(dsn).pool()
            async with pool.acquire() as conn:
                found[dsn] = await existing(conn, [*named, *excluded])

        await self._on_every_database(look)
        if named or excluded:
            self._share(named, excluded, found)
        if self.args.command not in ("up", "down"):
            return

        async def drift(dsn: str) -> None:
            engine = self.engine(dsn)
            up = self.args.command == "up"
            plan = await engine.plan(self.tenants(engine), exclude=self.exclude(engine),
                                     prefix=self.config.prefix,
                                     target=self.args.target if up else None)
            try:
                engine.refuse_drift(plan)
            except DriftError as exc:
                raise DriftError(f"{redact_dsn(dsn)}: {exc}", exc.drifted) from None
            if up:
                self.plans[dsn] = plan

        await self._on_every_database(drift)

    async def _on_every_database(self, check: Callable[[str], Coroutine[Any, Any, None]]) -> None:
        try:
            async with anyio.create_task_group() as tg:
                for dsn in self.config.dsns:
                    tg.start_soon(check, dsn)
        except BaseExceptionGroup as group:
            raise _first(group) from None

    def _share(self, named: tuple[str, ...], excluded: tuple[str, ...],
               found: dict[str, set[str]]) -> None:
        anywhere = set().union(*found.values())
        for what, wanted in (("tenant", named), ("excluded tenant", excluded)):
            missing = [n for n in wanted if n not in anywhere]
            if missing:
                raise TargetError(f"{what} schema not found in any database: {listed(missing)}")
        for dsn in self.config.dsns:
            self._targets[dsn] = (tuple(n for n in named if n in found[dsn]),
                                  tuple(n for n in excluded if n in found[dsn]))

    def notice(self, event: str, message: str) -> None:
        """A line for the person at the terminal; a structured event in JSON mode."""
        if self.config.log_format == "json":
            _log.warning(event, message=message)
        else:
            self.err.print(message, markup=False)

    def on_signal(self, signum: int) -> None:
        name = signal.Signals(signum).name
        if self.signal is not None:
            self.notice("cancelling", f"{name} again: cancelling running tenants.")
            if self.cancel_scope is not None:
                self.cancel_scope.cancel()
            return
        self.signal = signum
        self.notice("stopping", f"{name}: starting no new tenant; waiting for running ones "
                    "(signal again to cancel them).")
        for engine in self.engines:
            engine.request_stop()

    async def close(self) -> None:
        # The process ends next: the connections say goodbye, the servers end them alone.
        for engine in self.engines:
            await engine.close(wait=False)


async def _each_database(session: _Session,
                         action: Callable[[Engine, str], Awaitable[Any]]) -> list[Any]:
    """Run *action* on every database of the fleet at once; results in DSN order."""
    results: list[Any] = [None] * len(session.config.dsns)

    async def one(i: int, dsn: str) -> None:
        results[i] = await action(session.engine(dsn), session.label(dsn))

    try:
        async with anyio.create_task_group() as tg:
            for i, dsn in enumerate(session.config.dsns):
                tg.start_soon(one, i, dsn)
    except BaseExceptionGroup as group:
        raise _first(group) from None
    return results


def _first(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The error to report from a task group: a TenantmigError if there is one."""
    ours, _rest = group.split(TenantmigError)
    leaves = list(_leaves(ours if ours is not None else group))
    return leaves[0]


def _leaves(error: BaseException) -> Iterator[BaseException]:
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from _leaves(inner)
    else:
        yield error


def _run_exit(session: _Session, reports: Sequence[Report]) -> int:
    if session.signal is not None:
        return EXIT_SIGTERM if session.signal == signal.SIGTERM else EXIT_SIGINT
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


async def _migrate(session: _Session) -> int:
    args = session.args
    if args.command == "up" and args.dry_run:
        return await _plan(session)
    use_bar = session.err.is_terminal and not getattr(args, "json", False)
    display = _render.ProgressDisplay(session.err, args.command) if use_bar else None
    session.progress = display

    async def act(engine: Engine, label: str) -> Report:
        arguments = {k: v for k, v in vars(args).items()
                     if k not in ("dsn", "func", "config") and v not in (None, [], False)}
        if args.command == "up":
            return await engine.upgrade(session.tenants(engine), target=args.target,
                                        exclude=session.exclude(engine),
                                        prefix=session.config.prefix,
                                        arguments=arguments,
                                        plan=session.plans.get(engine.dsn or ""))
        if args.command == "down":
            return await engine.downgrade(args.target, session.tenants(engine),
                                          exclude=session.exclude(engine),
                                          prefix=session.config.prefix,
                                          arguments=arguments)
        return await engine.resume(args.run_id)

    if display is not None:
        with display:
            reports = await _each_database(session, act)
    else:
        reports = await _each_database(session, act)
    labels = [session.label(d) for d in session.config.dsns]
    if getattr(args, "json", False):
        _print_json(session, [_render.report_json(r, lbl)
                              for r, lbl in zip(reports, labels, strict=True)])
    else:
        for report, label in zip(reports, labels, strict=True):
            _render.print_report(session.out, report, label)
    return _run_exit(session, reports)


def _print_json(session: _Session, documents: list[Any]) -> None:
    """One JSON document: the object for one database, a list for a fleet."""
    session.out.print_json(_render.dumps(documents if len(documents) > 1 else documents[0]))


async def _show(
    session: _Session,
    fetch: Callable[[Engine], Awaitable[_T]],
    as_json: Callable[[_T, str], Any],
    as_text: Callable[[_T, str], None],
) -> int:
    """A read-only command on every database: one JSON document, or text per database."""

    async def act(engine: Engine, label: str) -> Any:
        found = await fetch(engine)
        if session.args.json:
            return as_json(found, label)
        as_text(found, label)
        return None

    results = await _each_database(session, act)
    if session.args.json:
        _print_json(session, results)
    return EXIT_OK


async def _plan(session: _Session) -> int:
    args = session.args

    def text(plan: Plan, label: str) -> None:
        _render.print_plan(session.out, plan, label, None)
        drift = plan.drift()
        if drift:
            session.out.print(f"[red]Drift:[/] up would refuse: versions "
                              f"{', '.join(map(str, sorted(drift)))} differ from files.")

    return await _show(
        session,
        lambda engine: engine.plan(session.tenants(engine), target=args.target,
                                   exclude=session.exclude(engine),
                                   prefix=session.config.prefix),
        _render.plan_json,
        text,
    )


async def _status(session: _Session) -> int:
    return await _show(
        session,
        lambda engine: engine.status(session.tenants(engine), exclude=session.exclude(engine),
                                     prefix=session.config.prefix),
        _render.status_json,
        lambda status, label: _render.print_status(session.out, status, label),
    )


async def _ledger(session: _Session) -> int:
    return await _show(
        session,
        lambda engine: engine.ledger(session.args.run_id),
        lambda found, label: _render.ledger_json(*found, label),
        lambda found, label: _render.print_ledger(session.out, *found, label),
    )


_COMMANDS: dict[str, Callable[[_Session], Awaitable[int]]] = {
    "up": _migrate,
    "down": _migrate,
    "resume": _migrate,
    "plan": _plan,
    "status": _status,
    "ledger": _ledger,
}


def _quiet_cancelled_transactions(loop: asyncio.AbstractEventLoop,
                                  context: dict[str, Any]) -> None:
    """A second signal cancels running tenants mid-transaction; asyncpg then reports each
    connection it resets as an error. The rollback is the point: not worth a line."""
    if str(context.get("message", "")).startswith("Resetting connection with an active "
                                                   "transaction"):
        _log.debug("connection reset after cancel", detail=context["message"])
        return
    loop.default_exception_handler(context)


async def _main_async(session: _Session) -> int:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_cancelled_transactions)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, session.on_signal, signum)
    code = EXIT_SIGINT
    try:
        with anyio.CancelScope() as scope:
            session.cancel_scope = scope
            if session.args.command in ("up", "down", "plan", "status"):
                await session.preflight()
            code = await _COMMANDS[session.args.command](session)
        if scope.cancelled_caught and session.args.command in ("up", "down", "resume"):
            # Cancelled by a second signal: no report was made, so say where things stand.
            session.notice("cancelled", "Cancelled: migrations in progress were stopped "
                           "(a transactional one rolls back); finished ones stay. `tenantmig "
                           "ledger` shows the run, `tenantmig resume` continues it.")
    finally:
        with anyio.CancelScope(shield=True):
            await session.close()
    if session.signal is not None:
        return EXIT_SIGTERM if session.signal == signal.SIGTERM else EXIT_SIGINT
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``tenantmig`` command; returns the exit code."""
    args = _parser().parse_args(argv)
    err = _render.console(stderr=True)
    dsns: list[str] = list(args.dsn or [])
    json_logs = args.log_format == "json"
    try:
        if json_logs:
            configure("json", verbosity=args.verbose, dsns=dsns)
        config = _config(args)
        dsns = list(config.dsns)
        json_logs = config.log_format == "json"
        configure(config.log_format, verbosity=args.verbose, dsns=dsns)
        if args.command == "demo":
            from ._demo import run_demo

            return run_demo(args, config)
        if args.command == "lint":
            from ._lint import run_lint

            return run_lint(args, config)
        if args.command == "new":
            from ._new import run_new

            return run_new(args, config)
        if not config.dsns:
            raise TenantmigError("no database: give --dsn, set TENANTMIG_DSN, or put dsn in "
                                 "tenantmig.toml")
        # The ledger is read from the control schema alone: no migrations folder needed.
        migrations = (MigrationSet(config.migrations, ()) if args.command == "ledger"
                      else load_migrations(config.migrations))
        session = _Session(args, config, migrations)
        return asyncio.run(_main_async(session))
    except TenantmigError as exc:
        message = scrub(str(exc), dsns)
        if json_logs:
            _log.error("error", error=message, kind=type(exc).__name__)
        else:
            err.print(f"tenantmig: error: {message}", markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_SIGINT

