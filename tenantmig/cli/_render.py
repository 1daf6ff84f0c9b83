"""Turning reports into what a person (or a machine, with --json) reads."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import asdict
from datetime import datetime
from typing import Any

from rich.console import Console
from rich.markup import escape as _rich_escape
from rich.table import Table

from .._sql import UnsafeTenantName
from ..ledger import LedgerRow, RunRecord
from ..outcome import TenantOutcome
from ..plan import Plan, TenantPlan
from ..report import Report, Status

# C0 and C1 control characters but tab and newline, shown as \xNN: a tenant name (or an
# error message quoting one) must not recolour, retitle or rewrite the user's terminal.
_VISIBLE = {c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F, *range(0x80, 0xA0))
            if c not in (0x09, 0x0A)}


def visible(text: str) -> str:
    """*text* with its control characters shown as ``\\xNN``."""
    return text.translate(_VISIBLE)


def escape(text: str) -> str:
    """Text from the database or the files, made safe for console markup: its control
    characters visible, its markup escaped. Unlike rich's escape, a trailing backslash
    is not doubled (rich doubles it in case a tag follows, then prints both): in this
    module no ``[`` ever follows an escaped value directly."""
    visible = text.translate(_VISIBLE)
    out = _rich_escape(visible)
    if visible.endswith("\\") and out.endswith("\\\\") and not visible.endswith("\\\\"):
        out = out[:-1]
    return out


class _Console(Console):
    def on_broken_pipe(self) -> None:
        """The reader went away (``tenantmig status | head``): print nothing more and let
        the command end with its own exit code. (rich's default raises SystemExit(1)
        inside the event loop: exit 1 and asyncio's "Task exception was never retrieved"
        on stderr, even for an ``up`` that migrated every tenant.)"""
        self.quiet = True
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.file.fileno())
        os.close(devnull)


def console(*, stderr: bool = False) -> Console:
    """Where the command line prints. No emoji codes: a tenant named ``tenant_:fire:``
    (names are whatever the database holds) must print as itself, like the escaped
    markup around it; no highlighting, no wrapping of long names."""
    return _Console(stderr=stderr, highlight=False, soft_wrap=True, emoji=False)


def _v(version: int | None) -> str:
    return "-" if version is None else str(version)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(data: Any) -> str:
    return json.dumps(data, indent=2, default=_json_default, ensure_ascii=False)


class ProgressDisplay:
    """A live bar on a terminal: done/failed/total, rate, ETA."""

    def __init__(self, console: Console, label: str) -> None:
        # Imported here: only a terminal shows a bar, and rich.progress is the largest part
        # of rich to import.
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[red]{task.fields[failed]} failed"),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            redirect_stderr=True,
            redirect_stdout=False,
        )
        self._task = self._progress.add_task(label, total=None, failed=0, rate="")
        self._failed = 0
        self._done = 0

    def __enter__(self) -> ProgressDisplay:
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def add_total(self, tenants: int) -> None:
        """A run started (one per database of a fleet) with this many tenants to do."""
        total = (self._progress.tasks[0].total or 0) + tenants
        self._progress.update(self._task, total=total)

    def advance(self, outcome: TenantOutcome) -> None:
        if outcome.status == "skipped":
            return
        self._done += 1
        if outcome.status == "failed":
            self._failed += 1
        elapsed = self._progress.tasks[0].elapsed or 0.0
        rate = f"{self._done / elapsed:,.0f} tenants/s" if elapsed > 0.5 else ""
        self._progress.update(self._task, advance=1, failed=self._failed, rate=rate)


def outcome_dict(o: TenantOutcome) -> dict[str, Any]:
    data = asdict(o)
    data["applied"] = list(o.applied)
    return data


def report_json(report: Report, database: str) -> dict[str, Any]:
    return {
        "database": database,
        "command": report.command,
        "run_id": report.run_id,
        "target": report.target,
        "seconds": round(report.seconds, 3),
        "interrupted": report.interrupted,
        "counts": report.counts(),
        "failed": [outcome_dict(o) for o in report.failed],
        "pending": [o.tenant for o in report.pending],
    }


def print_report(console: Console, report: Report, database: str) -> None:
    """The final summary of a run: counts, slowest tenants, failures with SQLSTATE."""
    counts = report.counts()
    where = f" on {database}" if database else ""
    if report.run_id is None:
        if report.outcomes and report.command == "down":
            console.print(
                f"Nothing to do{where}: {counts['skipped']} tenant(s) already at or below "
                f"version {_v(report.target)}."
            )
        elif report.outcomes:
            console.print(
                f"Nothing to do{where}: {counts['skipped']} tenant(s) already have every "
                f"migration up to version {_v(report.target)}."
            )
        elif report.command == "resume":
            console.print(f"Nothing to resume{where}: the run has no failed or unfinished "
                          "tenants.")
        else:
            console.print(f"Nothing to do{where}: no tenant schema matched.")
        return
    verb = {"up": "migrated", "down": "downgraded", "resume": "resumed",
            "provision": "provisioned", "baseline": "adopted"}.get(report.command,
                                                                   report.command)
    applied = ("version(s) recorded as applied, none run" if report.command == "baseline"
               else "migration(s) applied")
    console.print(
        f"Run {report.run_id}{where}: {counts['succeeded']} {verb}, "
        f"{counts['failed']} failed, {counts['pending']} pending, "
        f"{counts['skipped']} already at target {_v(report.target)}; "
        f"{report.applied_count} {applied} in {report.seconds:.2f}s."
    )
    if report.interrupted:
        console.print("[yellow]Interrupted:[/] tenants not started are pending in the ledger; "
                      f"finish with: tenantmig resume {report.run_id}")
    slowest = report.slowest(5)
    if slowest and len(report.outcomes) > 1:
        console.print(
            "Slowest: "
            + ", ".join(f"{escape(o.tenant)} {o.seconds:.2f}s" for o in slowest)
        )
    if report.failed:
        table = Table(title="Failed tenants", title_justify="left")
        for column in ("tenant", "version", "sqlstate", "attempts", "error"):
            table.add_column(column)
        groups = failure_groups(report.failed)
        for group in groups[:50]:
            first = group[0]
            who = escape(first.tenant) if len(group) == 1 else (
                f"{len(group)} tenants: " + ", ".join(escape(o.tenant) for o in group[:3])
                + (", ..." if len(group) > 3 else ""))
            message = first.message or ""
            if len(group) > 1:
                message = _anonymous(first)
            table.add_row(who, _v(first.failing_version), first.sqlstate or "-",
                          str(max(o.attempts for o in group)), escape(message[:_MESSAGE_SHOWN]))
        console.print(table)
        if len(groups) > 50:
            console.print(f"... and {len(groups) - 50} more kinds of failure: tenantmig ledger "
                          f"{report.run_id}")
    if report.pending or any(o.attempts > 0 for o in report.failed):
        console.print(f"Retry the failed and pending tenants with: tenantmig resume "
                      f"{report.run_id}")
    elif report.failed:
        # Refused before anything ran (a down with a missing undo): a retry as things
        # stand would be refused again.
        console.print("Nothing was tried in the failed tenants: fix what their errors name, "
                      f"then finish with: tenantmig resume {report.run_id}")


_MESSAGE_SHOWN = 600
"""Characters of a failure's message in the summary (with PostgreSQL's DETAIL, HINT and
CONTEXT it can be long; the ledger keeps it whole)."""


def _anonymous(outcome: TenantOutcome) -> str:
    """The failure's message with the tenant's own name in it replaced by ``<tenant>``."""
    message = outcome.message or ""
    quoted = '"' + outcome.tenant.replace('"', '""') + '"'
    return message.replace(quoted, "<tenant>").replace(outcome.tenant, "<tenant>")


def failure_groups(failed: list[TenantOutcome]) -> list[list[TenantOutcome]]:
    """Failures that are the same but for the tenant (version, SQLSTATE, message with the
    tenant's name taken out), most common first: the summary shows each kind once."""
    groups: dict[tuple[int | None, str | None, str], list[TenantOutcome]] = {}
    for o in failed:
        groups.setdefault((o.failing_version, o.sqlstate, _anonymous(o)), []).append(o)
    return sorted(groups.values(), key=len, reverse=True)


def print_plan(console: Console, plan: Plan, database: str, sql_for: str | None,
               *, show_sql: bool = True) -> None:
    """Tenants grouped by what they would get, and the SQL rendered for one tenant."""
    where = f" on {database}" if database else ""
    work = plan.work
    console.print(
        f"Plan{where}: {len(plan.tenants)} tenant(s) targeted, {len(work)} to migrate "
        f"to version {_v(plan.target)}, {plan.pending_count} migration(s) in all."
    )
    if plan.shared is not None:
        console.print(f"  shared schema {escape(plan.shared.tenant)} first: "
                      + (", ".join(f"V{m.version}" for m in plan.shared.pending)
                         or "nothing to do"))
    groups: dict[tuple[int, ...], list[str]] = defaultdict(list)
    for t in work:
        groups[tuple(m.version for m in t.pending)].append(t.tenant)
    for versions, tenants in sorted(groups.items(), key=lambda kv: -len(kv[1])):
        shown = ", ".join(escape(t) for t in tenants[:5])
        more = f" and {len(tenants) - 5} more" if len(tenants) > 5 else ""
        console.print(f"  {len(tenants)} tenant(s) ({shown}{more}): "
                      + ", ".join(f"V{v}" for v in versions))
    if not work or not show_sql:
        return
    # The example: the tenant asked for, else the first whose SQL can all be rendered (a
    # name that cannot be put safely in a migration fails that tenant alone in `up`).
    rendered = {t.tenant: _rendered(t) for t in work}
    unsafe = [t for t, sql in rendered.items() if sql is None]
    if unsafe:
        shown = ", ".join(escape(t) for t in unsafe[:5])
        more = f" and {len(unsafe) - 5} more" if len(unsafe) > 5 else ""
        console.print(f"  {len(unsafe)} tenant(s) whose name cannot be put safely where a "
                      f"migration puts {{{{schema}}}}: up would fail them ({shown}{more})")
    example = next((t for t in work if t.tenant == sql_for and rendered[t.tenant]),
                   next((t for t in work if rendered[t.tenant]), None))
    if example is None:
        return
    console.print(f"\nSQL for {escape(example.tenant)}:")
    for m, sql in zip(example.pending, rendered[example.tenant] or [], strict=True):
        mode = "" if m.transactional else " (no transaction)"
        console.print(f"-- V{m.version} {escape(m.description)}{mode}", style="bold")
        if sql is not None:
            console.print(escape(sql), highlight=False)
        else:
            console.print(f"-- Python migration {escape(m.filename)}: up(ctx)")


def _rendered(plan: TenantPlan) -> list[str | None] | None:
    """Each pending migration's SQL for the tenant (None for Python); None if the tenant's
    name cannot be put safely into one of them."""
    out: list[str | None] = []
    for m in plan.pending:
        if m.up.sql is None:
            out.append(None)
            continue
        try:
            out.append(m.up.render(plan.tenant).replace("\r\n", "\n").strip())
        except UnsafeTenantName:
            return None
    return out


def plan_json(plan: Plan, database: str) -> dict[str, Any]:
    return {
        "database": database,
        "target": plan.target,
        "shared": None if plan.shared is None else {
            "schema": plan.shared.tenant, "current": plan.shared.current,
            "pending": [m.version for m in plan.shared.pending]},
        "tenants": [
            {"tenant": t.tenant, "current": t.current,
             "pending": [m.version for m in t.pending]}
            for t in plan.tenants
        ],
    }


def status_json(status: Status, database: str) -> dict[str, Any]:
    return {
        "database": database,
        "head": status.head,
        "tenants": len(status.tenants),
        "by_version": {_v(k): v for k, v in sorted(status.by_version.items(),
                                                   key=lambda kv: (kv[0] is not None, kv[0]))},
        "behind": [{"tenant": t.tenant, "current": t.current, "pending": list(t.pending)}
                   for t in status.behind],
        "drifted": [{"tenant": t.tenant, "drifted": list(t.drifted), "unknown": list(t.unknown)}
                    for t in status.drifted],
        "failed_last_run": [
            {"tenant": t.tenant, "failing_version": t.last_failure.failing_version,
             "sqlstate": t.last_failure.sqlstate, "message": t.last_failure.message}
            for t in status.failed if t.last_failure is not None
        ],
        "baselined": {t.tenant: t.baselined for t in status.tenants
                      if t.baselined is not None},
        "shared": None if status.shared is None else {
            "schema": status.shared.tenant, "current": status.shared.current,
            "pending": list(status.shared.pending), "head": status.shared_head},
        "last_run": status.last_run.run_id if status.last_run else None,
        "last_run_probably_killed": bool(status.last_run and status.last_run.probably_dead()),
    }


def print_status(console: Console, status: Status, database: str) -> None:
    where = f" on {database}" if database else ""
    console.print(f"Status{where}: {len(status.tenants)} tenant(s), head is version "
                  f"{_v(status.head)}.")
    table = Table()
    table.add_column("version", justify="right")
    table.add_column("tenants", justify="right")
    for version, count in sorted(status.by_version.items(),
                                 key=lambda kv: (kv[0] is not None, kv[0])):
        label = "none" if version is None else str(version)
        if version == status.head:
            label += " (head)"
        table.add_row(label, str(count))
    if status.tenants:
        console.print(table)
    if status.shared is not None:
        shared = status.shared
        pending = (", pending " + ", ".join(f"V{v}" for v in shared.pending)
                   if shared.pending else " (head)")
        console.print(f"Shared schema {escape(shared.tenant)}: at version {_v(shared.current)}"
                      f"{pending}; its head is {_v(status.shared_head)}.")
    for version, count in sorted(status.baselined.items()):
        console.print(f"{count} tenant(s) adopted by baseline at version {version} (recorded "
                      "as applied, not run).")
    behind = status.behind
    if not status.tenants:
        console.print("No tenant schema matches the targeting (check --prefix, --tenant).")
    else:
        console.print(f"{len(behind)} tenant(s) behind head." if behind
                      else "All tenants at head.")
    for t in behind[:10]:
        console.print(f"  {escape(t.tenant)}: at {_v(t.current)}, pending "
                      + ", ".join(f"V{v}" for v in t.pending))
    if len(behind) > 10:
        console.print(f"  ... and {len(behind) - 10} more (--json lists all)")
    for t in status.drifted:
        parts = []
        if t.drifted:
            parts.append("changed after apply: " + ", ".join(f"V{v}" for v in t.drifted))
        if t.unknown:
            parts.append("applied but no file: " + ", ".join(f"V{v}" for v in t.unknown))
        console.print(f"[red]Drift[/] in {escape(t.tenant)}: " + "; ".join(parts))
    if status.last_run is not None:
        _dead_run_notice(console, status.last_run)
    failed = status.failed
    if failed and status.last_run is not None:
        console.print(f"{len(failed)} tenant(s) failed in the latest run "
                      f"{status.last_run.run_id}:")
        for t in failed[:20]:
            f = t.last_failure
            assert f is not None
            console.print(f"  {escape(t.tenant)}: V{_v(f.failing_version)} "
                          f"{f.sqlstate or '-'} {escape((f.message or '')[:200])}")


def _dead_run_notice(console: Console, run: RunRecord) -> None:
    if run.probably_dead():
        console.print(f"[yellow]No sign of life from run {run.run_id} for "
                      f"{run.silent_seconds or 0:.0f}s:[/] its runner was probably killed. "
                      f"Finish it with: tenantmig resume {run.run_id}")


def ledger_json(run: RunRecord, rows: list[LedgerRow], database: str) -> dict[str, Any]:
    # The same four keys as a report's counts, zeros included.
    counts = dict.fromkeys(("succeeded", "failed", "pending", "skipped"), 0)
    for r in rows:
        counts[r.status] = counts.get(r.status, 0) + 1
    return {"database": database, "run": asdict(run) | {"probably_killed": run.probably_dead()},
            "counts": counts, "tenants": [asdict(r) for r in rows]}


def print_ledger(console: Console, run: RunRecord, rows: list[LedgerRow], database: str) -> None:
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r.status] += 1
    where = f" on {database}" if database else ""
    console.print(
        f"Run {run.run_id}{where}: {run.command} to version {_v(run.target)}, "
        f"started {run.started_at:%Y-%m-%d %H:%M:%S} by {escape(run.invoked_by)}"
        f"{'@' + escape(run.hostname) if run.hostname else ''}, status {run.status}."
    )
    console.print(", ".join(f"{counts[s]} {s}" for s in
                            ("succeeded", "failed", "pending", "skipped")))
    _dead_run_notice(console, run)
    for allowed in run.arguments.get("allowed", []):
        console.print(f"Accepted on purpose: {escape(str(allowed.get('file')))}:"
                      f"{allowed.get('line')} {escape(str(allowed.get('rule')))}: "
                      f"{escape(str(allowed.get('reason')))}")
    failed = [r for r in rows if r.status == "failed"]
    if failed:
        table = Table(title="Failed tenants", title_justify="left")
        for column in ("tenant", "reached", "failing", "sqlstate", "attempts", "error"):
            table.add_column(column)
        for r in failed:
            table.add_row(escape(r.tenant), _v(r.version_reached), _v(r.failing_version),
                          r.sqlstate or "-", str(r.attempts), escape((r.message or "")[:300]))
        console.print(table)
    pending = [r.tenant for r in rows if r.status == "pending"]
    if pending:
        shown = ", ".join(escape(t) for t in pending[:20])
        more = f" and {len(pending) - 20} more (--json lists all)" if len(pending) > 20 else ""
        console.print(f"Pending (not finished by this run): {shown}{more}")
