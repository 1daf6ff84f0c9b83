"""The command line: parse, configure logging, call the engine, render.

Exit codes: 0 all targeted tenants at target; 1 a tenant failed or was left pending;
2 usage, configuration, load or drift error (nothing touched); 130/143 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import signal
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import anyio
import structlog

from .. import __version__
from .._exceptions import TenantmigError
from .._sql import redact_dsn, scrub
from ..config import Config, load_config
from ..discovery import merge_tenants
from ..engine import Engine
from ..fleet import Fleet
from ..outcome import TenantOutcome
from ..plan import Plan
from ..report import Report
from ..source import MigrationSet, load_migrations
from . import _render
from ._logging import configure

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
    common.add_argument("--shared-migrations", metavar="DIR",
                        help="migrations of the shared schema, applied once per database "
                        "before any tenant")
    common.add_argument("--shared-target", metavar="NAME",
                        help="the schema the shared migrations change (public)")
    common.add_argument("--lint-after", type=int, metavar="V",
                        help="findings in versions up to V are shown but never block (the "
                        "history production already ran)")
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
    groups = {"targeting": targeting, "execution": execution}
    for name, command in _COMMANDS.items():
        parents = [common, *(groups[g] for g in command.groups)]
        command.arguments(sub.add_parser(name, parents=parents, help=command.help))
    return parser


def _config(args: argparse.Namespace) -> Config:
    return load_config(
        {
            "dsn": args.dsn,
            "migrations": args.migrations,
            "shared_migrations": args.shared_migrations,
            "shared_target": args.shared_target,
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
            "lint_after": args.lint_after,
        },
        config_file=args.config,
    )


class _Session:
    """One database command: the fleet (one engine per database), signals and output."""

    def __init__(self, args: argparse.Namespace, config: Config,
                 migrations: MigrationSet) -> None:
        self.args = args
        self.config = config
        self.out = _render.console()
        self.err = _render.console(stderr=True)
        shared = (None if config.shared_migrations is None or args.command == "ledger"
                  else load_migrations(config.shared_migrations))
        self.fleet = Fleet(config.dsns, migrations=migrations, shared_migrations=shared,
                           options=config.options,
                           on_outcome=self._on_outcome, on_run_start=self._on_run_start)
        self.signal: int | None = None
        self.cancel_scope: anyio.CancelScope | None = None
        self.progress: _render.ProgressDisplay | None = None

    def labels(self) -> list[str]:
        """Which database each result is about: on the console only when there are
        several; in JSON always (a consumer should not have to know how many there were)."""
        dsns = self.fleet.dsns
        if len(dsns) > 1 or getattr(self.args, "json", False):
            # scrubbed as well: a second line of defence for DSN shapes redaction misreads
            return [scrub(redact_dsn(dsn), list(dsns)) for dsn in dsns]
        return ["" for _ in dsns]

    def _on_run_start(self, tenants: int) -> None:
        if self.progress is not None:
            self.progress.add_total(tenants)

    def _on_outcome(self, outcome: TenantOutcome) -> None:
        if self.progress is not None:
            self.progress.advance(outcome)

    def tenants(self) -> list[str] | None:
        """The tenants named with --tenant and --tenants-file; None: all by prefix."""
        return list(merge_tenants(getattr(self.args, "tenant", []),
                                  getattr(self.args, "tenants_file", []))) or None

    def exclude(self) -> list[str]:
        return list(getattr(self.args, "exclude", None) or [])

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
        self.fleet.request_stop()

    async def close(self) -> None:
        # The process ends next: the connections say goodbye, the servers end them alone.
        await self.fleet.close(wait=False)


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
    fleet = session.fleet
    arguments = {k: v for k, v in vars(args).items()
                 if k not in ("dsn", "func", "config") and v not in (None, [], False)}

    async def act() -> list[Report]:
        if args.command == "baseline":
            return await fleet.baseline(args.version, session.tenants(),
                                        exclude=session.exclude(), arguments=arguments)
        if args.command == "up":
            return await fleet.upgrade(session.tenants(), target=args.target,
                                       exclude=session.exclude(), arguments=arguments)
        if args.command == "down":
            return await fleet.downgrade(args.target, session.tenants(),
                                         exclude=session.exclude(), arguments=arguments)
        return await fleet.resume(args.run_id)

    if display is not None:
        with display:
            reports = await act()
    else:
        reports = await act()
    labels = session.labels()
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
    found: Sequence[_T],
    as_json: Callable[[_T, str], Any],
    as_text: Callable[[_T, str], None],
) -> int:
    """What a read-only command found in each database: one JSON document, or text per
    database."""
    labels = session.labels()
    if session.args.json:
        _print_json(session, [as_json(f, lbl) for f, lbl in zip(found, labels, strict=True)])
    else:
        for f, lbl in zip(found, labels, strict=True):
            as_text(f, lbl)
    return EXIT_OK


async def _plan(session: _Session) -> int:
    args = session.args

    def text(plan: Plan, label: str) -> None:
        _render.print_plan(session.out, plan, label, None)
        drift = plan.drift()
        if drift:
            session.out.print(f"[red]Drift:[/] up would refuse: versions "
                              f"{', '.join(map(str, sorted(drift)))} differ from files.")

    plans = await session.fleet.plan(session.tenants(), target=args.target,
                                     exclude=session.exclude())
    return await _show(session, plans, _render.plan_json, text)


async def _status(session: _Session) -> int:
    found = await session.fleet.status(session.tenants(), exclude=session.exclude())
    return await _show(session, found, _render.status_json,
                       lambda status, label: _render.print_status(session.out, status, label))


async def _ledger(session: _Session) -> int:
    found = await session.fleet.ledger(session.args.run_id)
    return await _show(
        session, found,
        lambda f, label: _render.ledger_json(*f, label),
        lambda f, label: _render.print_ledger(session.out, *f, label),
    )


def _quiet_cancelled_transactions(loop: asyncio.AbstractEventLoop,
                                  context: dict[str, Any]) -> None:
    """A second signal cancels running tenants mid-transaction; asyncpg then reports each
    connection it resets as an error. The rollback is the point: not worth a line."""
    if str(context.get("message", "")).startswith("Resetting connection with an active "
                                                   "transaction"):
        _log.debug("connection reset after cancel", detail=context["message"])
        return
    loop.default_exception_handler(context)


async def _main_async(session: _Session,
                      action: Callable[[_Session], Awaitable[int]]) -> int:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_quiet_cancelled_transactions)
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, session.on_signal, signum)
    code = EXIT_SIGINT
    try:
        with anyio.CancelScope() as scope:
            session.cancel_scope = scope
            code = await action(session)
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


Run = Callable[[argparse.Namespace, Config], int]
"""A command: its parsed arguments and the configuration in, the exit code out."""


def _on_database(action: Callable[[_Session], Awaitable[int]], *,
                 migrations: bool = True) -> Run:
    """A command that works on the databases of the configuration (the fleet)."""

    def run(args: argparse.Namespace, config: Config) -> int:
        if not config.dsns:
            raise TenantmigError("no database: give --dsn, set TENANTMIG_DSN, or put dsn in "
                                 "tenantmig.toml")
        loaded = (load_migrations(config.migrations) if migrations
                  else MigrationSet(config.migrations, ()))
        return asyncio.run(_main_async(_Session(args, config, loaded), action))

    return run


def _resume(args: argparse.Namespace, config: Config) -> int:
    """``resume``: without --migrations, the folder the resumed run used, if it still
    exists (the run records it), so a resume from elsewhere applies the same files."""
    if args.migrations is None and config.dsns:
        folder = asyncio.run(_run_folder(config, args.run_id))
        if folder is not None and folder.is_dir() and folder != config.migrations.resolve():
            config = replace(config, migrations=folder)
            notice = f"resume: using the migrations folder the run used: {folder}"
            if config.log_format == "json":
                _log.info("resume folder", migrations=str(folder))
            else:
                _render.console(stderr=True).print(notice, markup=False)
    return _on_database(_migrate)(args, config)


async def _run_folder(config: Config, run_id: str | None) -> Path | None:
    engine = Engine(config.dsns[0], migrations=MigrationSet(config.migrations, ()),
                    options=config.options)
    try:
        run, _rows = await engine.ledger(run_id)
    except TenantmigError:
        return None  # no such run: resume itself says so
    finally:
        await engine.close(wait=False)
    recorded = run.arguments.get("migrations_dir")
    return Path(recorded) if isinstance(recorded, str) else None


def _lazy(module: str, name: str) -> Run:
    """A command whose module is imported only when it runs (start-up time of the rest)."""

    def run(args: argparse.Namespace, config: Config) -> int:
        command: Run = getattr(importlib.import_module(module, __package__), name)
        return command(args, config)

    return run


def _json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def _up_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", type=int, metavar="V", help="stop at version V")
    parser.add_argument("--dry-run", action="store_true", help="show the plan; touch nothing")
    _json(parser)


def _down_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", type=int, metavar="V", required=True)
    _json(parser)


def _plan_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--target", type=int, metavar="V")
    _json(parser)


def _run_id_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_id", nargs="?", metavar="RUN_ID", help="default: the latest run")
    _json(parser)


def _baseline_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--version", type=int, metavar="V", required=True,
                        help="record versions up to V as applied (they are not run)")
    _json(parser)


def _lint_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--fix", action="store_true",
                        help="add missing {{schema}}. qualifiers to the SQL files (changes "
                        "their checksums: only for migrations not applied anywhere yet)")
    parser.add_argument("--list", action="store_true", help="list the rules")
    parser.add_argument("--explain", metavar="RULE-ID", help="print a rule's page")
    parser.add_argument("--format", choices=("text", "json", "github", "sarif"),
                        help="text (the default), json (as --json), github (workflow "
                        "commands: annotations on the pull request) or sarif (2.1.0)")
    _json(parser)


def _demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--tenants", type=int, default=300, metavar="N")
    parser.add_argument("--concurrency", type=int, default=8, metavar="N")


def _new_arguments(parser: argparse.ArgumentParser) -> None:
    from ._new import add_arguments

    add_arguments(parser)


@dataclass(frozen=True)
class _Command:
    help: str
    groups: tuple[str, ...]
    """Shared option groups besides the common ones: ``targeting``, ``execution``."""
    arguments: Callable[[argparse.ArgumentParser], None]
    run: Run


_MIGRATE = ("targeting", "execution")

_COMMANDS: dict[str, _Command] = {
    "up": _Command("migrate targeted tenants to the latest version (or --target)", _MIGRATE,
                   _up_arguments, _on_database(_migrate)),
    "down": _Command("apply undo migrations down to --target", _MIGRATE, _down_arguments,
                     _on_database(_migrate)),
    "plan": _Command("what up would do, with the SQL for one tenant", ("targeting",),
                     _plan_arguments, _on_database(_plan)),
    "status": _Command("versions across tenants, pending, drifted, failed", ("targeting",),
                       _json, _on_database(_status)),
    "resume": _Command("re-run the failed and unfinished tenants of a run", ("execution",),
                       _run_id_arguments, _resume),
    "baseline": _Command("adopt existing tenants: record versions up to --version as applied "
                         "without running them", ("targeting",), _baseline_arguments,
                         _on_database(_migrate)),
    # The ledger is read from the control schema alone: no migrations folder needed.
    "ledger": _Command("show a run's ledger", (), _run_id_arguments,
                       _on_database(_ledger, migrations=False)),
    "lint": _Command("static safety checks of the migration files (no database)", (),
                     _lint_arguments, _lazy("._lint", "run_lint")),
    "new": _Command("write the next migration file(s), optionally from a safe pattern", (),
                    _new_arguments, _lazy("._new", "run_new")),
    "demo": _Command("migrate sample tenants in a throwaway local PostgreSQL", (),
                     _demo_arguments, _lazy("._demo", "run_demo")),
}
"""Every command, in the order ``--help`` lists them. Adding one: an entry here, its
``run(args, config) -> int`` (in a module of its own when it is more than a few lines),
its test and its section in docs/cli.md."""


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
        return _COMMANDS[args.command].run(args, config)
    except TenantmigError as exc:
        message = scrub(str(exc), dsns)
        if json_logs:
            _log.error("error", error=message, kind=type(exc).__name__)
        else:
            err.print(f"tenantmig: error: {message}", markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return EXIT_SIGINT

