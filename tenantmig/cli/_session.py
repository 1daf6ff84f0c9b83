"""The database commands: a session over the fleet (one engine per database), its
signals and its output, and the commands that run in it (up, down, resume, baseline,
plan, status, ledger)."""

from __future__ import annotations

import argparse
import asyncio
import signal
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import anyio
import structlog

from .._exceptions import TenantmigError
from .._sql import redact_dsn, scrub
from ..config import Config
from ..discovery import merge_tenants
from ..engine import Engine
from ..fleet import Fleet
from ..outcome import TenantOutcome
from ..plan import Plan
from ..report import Report
from ..source import MigrationSet, load_migrations
from . import _render

EXIT_OK, EXIT_FAILED = 0, 1
EXIT_SIGINT, EXIT_SIGTERM = 130, 143
_T = TypeVar("_T")

_log = structlog.get_logger("tenantmig")

Run = Callable[[argparse.Namespace, Config], int]
"""A command: its parsed arguments and the configuration in, the exit code out."""


class Session:
    """One database command: the fleet (one engine per database), signals and output."""

    def __init__(self, args: argparse.Namespace, config: Config,
                 migrations: MigrationSet) -> None:
        self.args = args
        self.config = config
        self.out = _render.console()
        self.err = _render.console(stderr=True)
        shared = (None if config.shared_migrations is None
                  or args.command in ("ledger", "prune")
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


def _run_exit(session: Session, reports: Sequence[Report]) -> int:
    if session.signal is not None:
        return EXIT_SIGTERM if session.signal == signal.SIGTERM else EXIT_SIGINT
    return EXIT_OK if all(r.ok for r in reports) else EXIT_FAILED


async def migrate(session: Session) -> int:
    args = session.args
    if args.command == "up" and args.dry_run:
        return await plan(session)
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


def _print_json(session: Session, documents: list[Any]) -> None:
    """One JSON document: the object for one database, a list for a fleet."""
    session.out.print_json(_render.dumps(documents if len(documents) > 1 else documents[0]))


async def _show(
    session: Session,
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


async def plan(session: Session) -> int:
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


async def status(session: Session) -> int:
    found = await session.fleet.status(session.tenants(), exclude=session.exclude())
    return await _show(session, found, _render.status_json,
                       lambda status, label: _render.print_status(session.out, status, label))


async def prune(session: Session) -> int:
    """``prune --older-than D``: old runs out of every database's ledger."""
    counts = await session.fleet.prune(session.args.older_than)
    labels = session.labels()
    if session.args.json:
        _print_json(session, [{"database": lbl, "pruned_runs": n}
                              for n, lbl in zip(counts, labels, strict=True)])
    else:
        for n, lbl in zip(counts, labels, strict=True):
            where = f" from {lbl}" if lbl else ""
            session.out.print(f"Pruned {n} run(s){where} that started more than "
                              f"{session.args.older_than} ago.", markup=False)
    return EXIT_OK


async def ledger(session: Session) -> int:
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


async def _main_async(session: Session,
                      action: Callable[[Session], Awaitable[int]]) -> int:
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


def on_database(action: Callable[[Session], Awaitable[int]], *,
                 migrations: bool = True) -> Run:
    """A command that works on the databases of the configuration (the fleet)."""

    def run(args: argparse.Namespace, config: Config) -> int:
        if not config.dsns:
            raise TenantmigError("no database: give --dsn, set TENANTMIG_DSN, or put dsn in "
                                 "tenantmig.toml")
        loaded = (load_migrations(config.migrations) if migrations
                  else MigrationSet(config.migrations, ()))
        return asyncio.run(_main_async(Session(args, config, loaded), action))

    return run


def resume(args: argparse.Namespace, config: Config) -> int:
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
    return on_database(migrate)(args, config)


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
