"""The command line: parse, configure logging, call the engine, render.

Exit codes: 0 all targeted tenants at target; 1 a tenant failed or was left pending;
2 usage, configuration, load or drift error (nothing touched); 130/143 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from .. import __version__
from .._exceptions import TenantmigError
from .._sql import scrub
from ..config import Config, load_config
from . import _render
from ._logging import configure
from ._session import (
    EXIT_SIGINT,
    Run,
    ledger,
    migrate,
    on_database,
    plan,
    prune,
    resume,
    status,
)

EXIT_USAGE = 2

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


def _prune_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--older-than", metavar="DURATION", required=True,
                        help="delete runs that started longer ago (e.g. 90d) with their "
                        "ledger rows; never a running run, the latest run or a baseline")
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
    parser.add_argument("--catalog", action="store_true",
                        help="judge with the targeted tenants' catalog, read from the "
                        "configured database (implied by --dsn; else no database is used)")
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
                   _up_arguments, on_database(migrate)),
    "down": _Command("apply undo migrations down to --target", _MIGRATE, _down_arguments,
                     on_database(migrate)),
    "plan": _Command("what up would do, with the SQL for one tenant", ("targeting",),
                     _plan_arguments, on_database(plan)),
    "status": _Command("versions across tenants, pending, drifted, failed", ("targeting",),
                       _json, on_database(status)),
    "resume": _Command("re-run the failed and unfinished tenants of a run", ("execution",),
                       _run_id_arguments, resume),
    "baseline": _Command("adopt existing tenants: record versions up to --version as applied "
                         "without running them", ("targeting",), _baseline_arguments,
                         on_database(migrate)),
    # The ledger is read from the control schema alone: no migrations folder needed.
    "ledger": _Command("show a run's ledger", (), _run_id_arguments,
                       on_database(ledger, migrations=False)),
    "prune": _Command("delete old runs from the ledger (--older-than 90d)", (),
                      _prune_arguments, on_database(prune, migrations=False)),
    "lint": _Command("static safety checks of the migration files (no database unless "
                     "--dsn or --catalog)", ("targeting",),
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

