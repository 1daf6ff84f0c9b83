"""Benchmark: tenantmig against the tightest floor on N tenant schemas, one case at a time.

The floor is plain asyncpg with the same concurrency: a pool, as many workers pulling
tenants from one queue, each tenant's statements sent as one multi-statement query (or one
round trip per statement with ``--floor statement``), no locks, no history, no bookkeeping.

    .venv/bin/python bench/run.py --case first|release|noop|status|provision \
        --tenants 1000 [--concurrency 8] [--floor batch|statement] [--atomic-tenant] \
        [--repeat 3] [--json out.json]

See bench/README.md: one command per row of the release-speed table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from cases import (
    CASES,
    CONTROL_SCHEMA,
    FIRST,
    PREFIX,
    PROVISION,
    RAW_DB,
    RELEASE,
    RELEASE_NEW,
    TEMPLATE_DB,
    TM_DB,
    Migration,
    build_template,
    clone_databases,
    insert_earlier_runs,
    tenant_names,
    verify,
    write_migrations,
)
from cluster import (
    Cluster,
    CpuMeter,
    checkpoint,
    cluster_tmpdir,
    describe_machine,
    drop_database,
    dsn_with_database,
    filesystem_type,
    machine_info,
    quote_ident,
)
from floor import FLOORS, provision_raw, run_floor
from phases import PhaseTimer, phase_timing
from tm import (
    TmResult,
    cli_command,
    cli_startup_seconds,
    compile_bytecode,
    configure_api_logging,
    probe_cli,
    provision_api,
    start_cli,
    tm_api,
    tm_cli,
    wait_cli,
)


def median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else float("nan")


def percentile(values: Sequence[float], p: float) -> float:
    """Nearest-rank percentile."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


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
    tm: Cost
    floor: Cost | None
    ratio: float | None
    """tenantmig / floor seconds; for provision, the ratio of the p95 latencies."""
    tm_max_rss_mib: float | None
    noop: Cost | None = None
    """first: the same `up` again, nothing left to do."""
    provision: dict[str, Any] | None = None
    earlier_ledger_rows: int | None = None
    verified: bool = True
    problems: list[str] = field(default_factory=list)


# --- what each case times -----------------------------------------------------------------


def _floor_text(migrations: Sequence[Migration], floor: str, atomic: bool) -> str:
    n = len(migrations)
    if floor == "batch":
        if atomic or n == 1:
            return f"per tenant ONE query: BEGIN; {n} statement(s); COMMIT"
        return f"per tenant ONE query: BEGIN; m; COMMIT repeated for {n} statements"
    if atomic:
        return f"per tenant {n + 2} round trips: BEGIN, {n} statement(s), COMMIT"
    return f"per tenant {n} round trip(s), autocommit"


def describe_case(args: argparse.Namespace) -> str:
    atomic = " --atomic-tenant" if args.atomic_tenant else ""
    floor = args.floor
    if args.case == "first":
        return (
            f"timed: `tenantmig up{atomic}` of V1-V5 on fresh tenants (then a timed no-op `up`);"
            f" floor: {_floor_text(FIRST, floor, args.atomic_tenant)}"
        )
    if args.case == "release":
        earlier = f", {args.earlier_runs} earlier runs in the ledger" if args.earlier_runs else ""
        return (
            f"untimed: `up` of V1-V5 (floor: the same statements){earlier}; "
            f"timed: `tenantmig up{atomic}` with V6 ({RELEASE_NEW.name}) new; "
            f"floor: {_floor_text([RELEASE_NEW], floor, args.atomic_tenant)}"
        )
    if args.case == "noop":
        return "untimed: `up` of V1-V5; timed: `tenantmig up` again, nothing to do; no floor"
    if args.case == "status":
        return "untimed: `up` of V1-V5; timed: `tenantmig status`; no floor"
    return (
        f"while `tenantmig up{atomic}` of V1-V6 runs on the N tenants (V1 creates accounts if "
        f"missing), {args.provisions} x tenantmig.provision() of a new tenant, one after "
        f"another; floor: while the floor applies V1-V6 to the N tenants, "
        f"{args.provisions} x a new connection, CREATE SCHEMA + "
        f"{_floor_text(PROVISION, floor, args.atomic_tenant)}"
    )


# --- one repeat ---------------------------------------------------------------------------


@dataclass
class Bench:
    args: argparse.Namespace
    admin_dsn: str
    names: list[str]
    mode: str
    workdir: Path
    timer: PhaseTimer | None
    meter: CpuMeter
    logs: list[Path] = field(default_factory=list)

    @property
    def raw_dsn(self) -> str:
        return dsn_with_database(self.admin_dsn, RAW_DB)

    @property
    def tm_dsn(self) -> str:
        return dsn_with_database(self.admin_dsn, TM_DB)

    def folder(self, migrations: Sequence[Migration]) -> Path:
        name = f"migrations-{migrations[0].name}-v{migrations[-1].version}"
        path = self.workdir / name
        if not path.exists():
            write_migrations(path, migrations)
        return path

    def measured(self, fn: Callable[[], float]) -> Cost:
        asyncio.run(checkpoint(self.admin_dsn))
        before = self.meter.snapshot()
        seconds = fn()
        self.meter.settle(before)
        return Cost(seconds, *self.meter.delta(before, self.meter.snapshot()))

    def tenantmig(
        self, command: str, migrations: Sequence[Migration], label: str, *, timed: bool = True,
        profile: Path | None = None,
    ) -> TmResult:
        log_path = self.workdir / (f"{label}.log" if self.mode == "cli" else "tenantmig-api.log")
        if log_path not in self.logs:
            self.logs.append(log_path)
        folder = self.folder(migrations)
        atomic = self.args.atomic_tenant
        c = self.args.concurrency
        if self.mode == "cli":
            result = tm_cli(command, self.tm_dsn, folder, c, log_path, atomic=atomic)
        else:
            ctx = (
                phase_timing(self.timer)
                if self.timer is not None and timed
                else contextlib.nullcontext()
            )
            with ctx:
                result = tm_api(
                    command, self.tm_dsn, folder, c, log_path, atomic=atomic, profile_path=profile
                )
        if not result.ok:
            raise SystemExit(f"tenantmig {command} ({label}) failed: {result.detail}")
        return result

    def floor(self, migrations: Sequence[Migration], *, floor: str | None = None) -> float:
        return asyncio.run(
            run_floor(
                self.raw_dsn, self.names, self.args.concurrency, migrations,
                floor or self.args.floor, atomic=self.args.atomic_tenant,
            )
        )


def _alternate(index: int, tm_step: Callable[[], None], floor_step: Callable[[], None]) -> str:
    """Floor first on even repeats, tenantmig first on odd ones."""
    if index % 2 == 0:
        floor_step()
        tm_step()
        return "floor, tm"
    tm_step()
    floor_step()
    return "tm, floor"


def repeat_first_or_release(b: Bench, index: int) -> RepeatResult:
    args = b.args
    asyncio.run(clone_databases(b.admin_dsn))
    earlier = None
    if args.case == "release":
        # The tenants are already under tenantmig: their first `up`, untimed, on both sides.
        b.tenantmig("up", FIRST, f"setup-{index + 1}", timed=False)
        b.floor(FIRST, floor="batch")
        if args.earlier_runs:
            earlier = asyncio.run(insert_earlier_runs(b.tm_dsn, args.earlier_runs))
    timed_set = RELEASE if args.case == "release" else FIRST
    floor_set = [RELEASE_NEW] if args.case == "release" else FIRST
    costs: dict[str, Cost] = {}
    rss: list[float | None] = []
    profile = args.profile if index == 0 else None

    def tm_step() -> None:
        def go() -> float:
            result = b.tenantmig("up", timed_set, f"up-{index + 1}", profile=profile)
            rss.append(result.max_rss_mib)
            return result.seconds

        costs["tm"] = b.measured(go)
        if args.case == "first":
            costs["noop"] = b.measured(
                lambda: b.tenantmig("up", timed_set, f"noop-{index + 1}").seconds
            )

    def floor_step() -> None:
        costs["floor"] = b.measured(lambda: b.floor(floor_set))

    order = _alternate(index, tm_step, floor_step)
    problems = [
        f"{RAW_DB}: {p}"
        for p in asyncio.run(verify(b.raw_dsn, b.names, timed_set, with_history=False))
    ]
    problems += [
        f"{TM_DB}: {p}"
        for p in asyncio.run(verify(b.tm_dsn, b.names, timed_set, with_history=True))
    ]
    return RepeatResult(
        repeat=index + 1,
        order=order,
        tm=costs["tm"],
        floor=costs["floor"],
        ratio=costs["tm"].seconds / costs["floor"].seconds,
        tm_max_rss_mib=rss[0],
        noop=costs.get("noop"),
        earlier_ledger_rows=earlier,
        problems=problems,
    )


def repeat_noop_or_status(b: Bench, index: int) -> RepeatResult:
    asyncio.run(clone_databases(b.admin_dsn, [TM_DB]))
    b.tenantmig("up", FIRST, f"setup-{index + 1}", timed=False)
    command = "status" if b.args.case == "status" else "up"
    rss: list[float | None] = []
    profile = b.args.profile if index == 0 else None

    def go() -> float:
        result = b.tenantmig(command, FIRST, f"{b.args.case}-{index + 1}", profile=profile)
        rss.append(result.max_rss_mib)
        return result.seconds

    cost = b.measured(go)
    problems = [
        f"{TM_DB}: {p}" for p in asyncio.run(verify(b.tm_dsn, b.names, FIRST, with_history=True))
    ]
    return RepeatResult(
        repeat=index + 1, order="tm", tm=cost, floor=None, ratio=None,
        tm_max_rss_mib=rss[0], problems=problems,
    )


# --- provision ----------------------------------------------------------------------------


def _running(pid: int) -> bool:
    """Whether child *pid* is still running, without reaping it (its rusage is read later)."""
    try:
        return os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
    except ChildProcessError:
        return False


async def _wait_for_run(dsn: str, pid: int) -> None:
    """Until tenantmig's run has started (discovery and plan done) or the CLI has exited."""
    conn = await asyncpg.connect(dsn)
    try:
        runs = f"{quote_ident(CONTROL_SCHEMA)}.runs"
        while _running(pid):
            if await conn.fetchval("SELECT to_regclass($1) IS NOT NULL", runs) and (
                await conn.fetchval(f"SELECT count(*) FROM {runs} WHERE status = 'running'")
            ):
                return
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


async def _provisions(
    count: int, one: Callable[[str], Awaitable[float]], pid: int
) -> tuple[list[tuple[float, bool]], list[str]]:
    """Each latency with whether it fell wholly inside *pid*'s run, and the schemas made."""
    taken: list[tuple[float, bool]] = []
    schemas: list[str] = []
    for k in range(1, count + 1):
        schema = f"{PREFIX}new_{k:04d}"
        busy = _running(pid)
        seconds = await one(schema)
        schemas.append(schema)
        taken.append((seconds, busy and _running(pid)))
    return taken, schemas


def repeat_provision(b: Bench, index: int) -> RepeatResult:
    args = b.args
    asyncio.run(clone_databases(b.admin_dsn))
    folder = b.folder(PROVISION)
    configure_api_logging(b.workdir / "provision.log")
    out: dict[str, Any] = {}
    costs: dict[str, Cost] = {}
    rss: list[float | None] = []
    created: list[str] = []

    # Imports, the migrations' first lint and the like are paid once per process, not per
    # tenant: one untimed provision on each side, of a schema outside the tenants' prefix.
    asyncio.run(provision_api(b.tm_dsn, "bench_warmup", folder))
    asyncio.run(provision_raw(b.raw_dsn, "bench_warmup", PROVISION, args.floor,
                              atomic=args.atomic_tenant))

    def tm_step() -> None:
        log_path = b.workdir / f"provision-up-{index + 1}.log"
        b.logs.append(log_path)
        cmd = cli_command(
            "up", b.tm_dsn, folder, args.concurrency, atomic=args.atomic_tenant
        )

        def go() -> float:
            t0 = time.perf_counter()
            proc = start_cli(cmd, log_path)
            # Reaped by a thread, so the `up`'s time ends when it does, not after the last
            # provision.
            reaped: list[TmResult] = []
            reaper = threading.Thread(target=lambda: reaped.append(wait_cli(proc, t0, log_path)))
            reaper.start()
            asyncio.run(_wait_for_run(b.tm_dsn, proc.pid))
            taken, names = asyncio.run(
                _provisions(
                    args.provisions, lambda s: provision_api(b.tm_dsn, s, folder), proc.pid
                )
            )
            reaper.join()
            result = reaped[0]
            if not result.ok:
                raise SystemExit(f"tenantmig up (provision case) failed: {result.detail}")
            rss.append(result.max_rss_mib)
            out["tm_taken"] = taken
            created[:] = names
            return result.seconds

        costs["tm"] = b.measured(go)

    def floor_step() -> None:
        cmd = [sys.executable, str(Path(__file__).with_name("floor.py")), b.raw_dsn,
               str(args.tenants), str(args.concurrency), "provision", args.floor]
        if args.atomic_tenant:
            cmd.append("atomic")

        def go() -> float:
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
            assert proc.stdout is not None
            proc.stdout.readline()  # "started": its pool is open
            taken, _ = asyncio.run(
                _provisions(
                    args.provisions,
                    lambda s: provision_raw(
                        b.raw_dsn, s, PROVISION, args.floor, atomic=args.atomic_tenant
                    ),
                    proc.pid,
                )
            )
            rest, _ = proc.communicate()
            if proc.returncode != 0 or not rest.strip().startswith("done "):
                raise SystemExit(f"floor (provision case) failed: exit {proc.returncode}")
            out["floor_taken"] = taken
            return float(rest.split()[1])

        costs["floor"] = b.measured(go)

    order = _alternate(index, tm_step, floor_step)
    for side in ("tm", "floor"):
        lat = [seconds for seconds, during in out[f"{side}_taken"] if during]
        out[f"{side}_during"] = len(lat)
        out[f"{side}_p50"] = median(lat)
        out[f"{side}_p95"] = percentile(lat, 95)
    everyone = [*b.names, *created]
    problems = [
        f"{RAW_DB}: {p}"
        for p in asyncio.run(verify(b.raw_dsn, everyone, PROVISION, with_history=False))
    ]
    problems += [
        f"{TM_DB}: {p}"
        for p in asyncio.run(verify(b.tm_dsn, everyone, PROVISION, with_history=True))
    ]
    for side in ("tm", "floor"):
        if out[f"{side}_during"] < args.provisions:
            print(
                f"  note: {side}: {out[f'{side}_during']} of {args.provisions} provisions "
                "fell wholly inside the bulk run (only those are counted); more --tenants "
                "make the run longer"
            )
    ratio = out["tm_p95"] / out["floor_p95"] if out["tm_during"] and out["floor_during"] else None
    return RepeatResult(
        repeat=index + 1, order=order, tm=costs["tm"], floor=costs["floor"], ratio=ratio,
        tm_max_rss_mib=rss[0], provision=out, problems=problems,
    )


# --- driver -------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--case", choices=CASES, default="first",
                   help="what is timed (default first); see bench/README.md")
    p.add_argument("--tenants", type=int, default=1000, help="tenant schemas (default 1000)")
    p.add_argument("--concurrency", type=int, default=8, help="for both contenders (default 8)")
    p.add_argument("--floor", choices=FLOORS, default="batch",
                   help="batch: each tenant's statements as ONE query (the tightest floor, "
                   "default); statement: one round trip per statement")
    p.add_argument("--atomic-tenant", action="store_true",
                   help="tenantmig --atomic-tenant; the floor sends one BEGIN ... COMMIT")
    p.add_argument("--earlier-runs", type=int, default=0,
                   help="release: N earlier runs (N x tenants ledger rows) in the ledger "
                   "before the timed release")
    p.add_argument("--provisions", type=int, default=20,
                   help="provision: new tenants created one after another during the run "
                   "(default 20)")
    p.add_argument("--repeat", type=int, default=1,
                   help="timed rounds on fresh databases; medians reported (default 1)")
    p.add_argument(
        "--mode", choices=("auto", "cli", "api"), default="auto",
        help="run tenantmig as `python -m tenantmig` (cli) or through tenantmig.Engine in "
        "this process (api); auto: cli if it works, else api. The provision case always "
        "runs its bulk `up` through the CLI",
    )
    p.add_argument("--dsn", help="postgresql:// URL of a superuser/CREATEDB role on an "
                   "existing server (default: start a throwaway cluster)")
    p.add_argument("--tmpdir", help="where the throwaway cluster lives (default: /dev/shm if "
                   "it is a writable tmpfs, else the system temp dir); see bench/README.md")
    p.add_argument("--json", type=Path, help="also write the results to this file")
    p.add_argument("--max-ratio", type=float,
                   help="exit 1 if the ratio exceeds this (for CI; cases with a floor)")
    p.add_argument("--phases", action="store_true",
                   help="api mode: time the engine's phases and print the breakdown")
    p.add_argument("--profile", type=Path,
                   help="api mode: write cProfile stats of the first timed call to this file")
    p.add_argument("--keep", action="store_true",
                   help="do not drop the bench databases at the end (with --dsn)")
    args = p.parse_args(argv)
    if args.tenants < 1 or args.concurrency < 1 or args.repeat < 1 or args.provisions < 1:
        p.error("--tenants, --concurrency, --repeat and --provisions must be at least 1")
    if args.earlier_runs < 0:
        p.error("--earlier-runs must be at least 0")
    if args.earlier_runs and args.case != "release":
        p.error("--earlier-runs applies to --case release")
    return args


def choose_mode(requested: str, case: str) -> tuple[str, str]:
    """(mode, note)."""
    why_not = None if requested == "api" and case != "provision" else probe_cli()
    if case == "provision" and why_not is not None:
        raise SystemExit(f"--case provision runs its bulk `up` through the CLI: {why_not}")
    if requested == "api":
        return "api", "Python API (tenantmig.Engine, in process), as requested"
    if why_not is None:
        return "cli", "CLI (python -m tenantmig, subprocess)"
    if requested == "cli":
        raise SystemExit(f"--mode cli: {why_not}")
    return "api", f"Python API (tenantmig.Engine, in process): CLI not usable ({why_not})"


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for n, row in enumerate(rows):
        print("  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _cpu(values: list[float | None]) -> str:
    known = [v for v in values if v is not None]
    return f"{median(known):.2f}" if known else "n/a"


def _fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def print_cpu(results: list[RepeatResult], label: str) -> None:
    """CPU seconds per side: steadier than wall time on a small or busy machine."""
    print(f"\n{label}CPU seconds (client = this process + the CLI subprocess):")
    rows = [["", "wall s", "client CPU s", "server CPU s", "total CPU s"]]
    for name, attr in (("floor", "floor"), ("tenantmig", "tm"), ("no-op", "noop")):
        costs: list[Cost] = [c for r in results if (c := getattr(r, attr)) is not None]
        if not costs:
            continue
        totals: list[float | None] = [
            c.client_cpu + c.server_cpu if c.server_cpu is not None else None for c in costs
        ]
        rows.append([
            name,
            f"{median([c.seconds for c in costs]):.2f}",
            _cpu([c.client_cpu for c in costs]),
            _cpu([c.server_cpu for c in costs]),
            _cpu(totals),
        ])
    print_table(rows)


def _quiet_logging() -> None:
    """Keep structlog's events off our output (API mode sends them to a file later)."""
    import logging

    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))


def summarize(results: list[RepeatResult]) -> dict[str, Any]:
    ratios = [r.ratio for r in results if r.ratio is not None]
    rss = [r.tm_max_rss_mib for r in results if r.tm_max_rss_mib is not None]
    summary: dict[str, Any] = {
        "tm_seconds": median([r.tm.seconds for r in results]),
        "floor_seconds": (
            median([r.floor.seconds for r in results if r.floor is not None])
            if any(r.floor is not None for r in results) else None
        ),
        "ratio": median(ratios) if ratios else None,
        "noop_seconds": (
            median([r.noop.seconds for r in results if r.noop is not None])
            if any(r.noop is not None for r in results) else None
        ),
        "tm_max_rss_mib": max(rss) if rss else None,
    }
    provisions = [r.provision for r in results if r.provision is not None]
    if provisions:
        for key in ("tm_p50", "tm_p95", "floor_p50", "floor_p95"):
            summary[f"provision_{key}"] = median([p[key] for p in provisions])
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    _quiet_logging()
    mode, mode_note = choose_mode(args.mode, args.case)
    if mode == "cli" and (args.phases or args.profile):
        raise SystemExit("--phases and --profile need --mode api")
    names = tenant_names(args.tenants)
    cluster: Cluster | None = None
    if args.dsn:
        admin_dsn = args.dsn
        storage = "unknown (--dsn)"
    else:
        cluster = Cluster(cluster_tmpdir(args.tmpdir))
        t0 = time.perf_counter()
        cluster.start()
        storage = filesystem_type(cluster.datadir)
        print(f"cluster started in {time.perf_counter() - t0:.1f}s ({cluster.dsn}, "
              f"data in {cluster.datadir}, {storage})")
        admin_dsn = cluster.dsn
    results: list[RepeatResult] = []
    timer = PhaseTimer() if args.phases else None
    try:
        machine = asyncio.run(machine_info(admin_dsn, storage))
        print(describe_machine(machine))
        print(f"tenantmig run through: {mode_note}")
        print(f"case {args.case}: {describe_case(args)}")
        if mode == "cli" or args.case == "provision":
            compile_bytecode()
        startup = cli_startup_seconds() if mode == "cli" else None
        if startup is not None:
            print(f"CLI startup (python -m tenantmig --help): {startup:.2f}s")

        t0 = time.perf_counter()
        asyncio.run(build_template(admin_dsn, names))
        print(f"template with {len(names)} tenants built in {time.perf_counter() - t0:.1f}s")

        meter = CpuMeter(cluster.datadir if cluster is not None else None)
        run_one = {
            "first": repeat_first_or_release,
            "release": repeat_first_or_release,
            "noop": repeat_noop_or_status,
            "status": repeat_noop_or_status,
            "provision": repeat_provision,
        }[args.case]
        with tempfile.TemporaryDirectory(prefix="tenantmig-bench-") as tmp:
            b = Bench(args, admin_dsn, names, mode, Path(tmp), timer, meter)
            for index in range(args.repeat):
                load = os.getloadavg()[0]
                r = run_one(b, index)
                if r.problems:
                    for log in b.logs:
                        lines = log.read_text(errors="replace").splitlines() if log.exists() else []
                        r.problems.append(f"tail of {log.name} ({len(lines)} lines):")
                        r.problems.extend("    " + line[:300] for line in lines[-15:])
                r.verified = not r.problems
                results.append(r)
                extra = f", no-op {r.noop.seconds:.2f}s" if r.noop is not None else ""
                floor_s = f"{r.floor.seconds:.2f}s" if r.floor is not None else "-"
                if r.earlier_ledger_rows is not None:
                    extra += f", {r.earlier_ledger_rows} earlier ledger rows"
                print(
                    f"repeat {r.repeat} ({r.order}, load {load:.1f}): "
                    f"tenantmig {r.tm.seconds:.2f}s, floor {floor_s}, "
                    f"ratio {_fmt(r.ratio)}, peak RSS {_fmt(r.tm_max_rss_mib, 1)} MiB{extra}, "
                    f"{'verified' if r.verified else 'VERIFICATION FAILED'}"
                )
                if r.provision is not None:
                    p = r.provision
                    print(f"  provision p50/p95: tenantmig {p['tm_p50'] * 1000:.1f}/"
                          f"{p['tm_p95'] * 1000:.1f} ms, floor {p['floor_p50'] * 1000:.1f}/"
                          f"{p['floor_p95'] * 1000:.1f} ms")
                for problem in r.problems:
                    print(f"  ! {problem}")
        if not args.keep:
            for name in (RAW_DB, TM_DB, TEMPLATE_DB):
                asyncio.run(drop_database(admin_dsn, name))
    finally:
        if cluster is not None:
            cluster.stop()

    s = summarize(results)
    label = "median " if args.repeat > 1 else ""
    print()
    print(describe_machine(machine))
    header = ["tenants", "concurrency", "case", "floor", f"{label}tenantmig s",
              f"{label}floor s", f"{label}ratio", "peak RSS MiB", "mode"]
    row = [
        str(args.tenants), str(args.concurrency),
        args.case + (" atomic" if args.atomic_tenant else "")
        + (f" +{args.earlier_runs} runs" if args.earlier_runs else ""),
        args.floor if s["floor_seconds"] is not None else "-",
        _fmt(s["tm_seconds"]), _fmt(s["floor_seconds"]), _fmt(s["ratio"]),
        _fmt(s["tm_max_rss_mib"], 1), mode,
    ]
    if s["noop_seconds"] is not None:
        header.append(f"{label}no-op s")
        row.append(_fmt(s["noop_seconds"]))
    print_table([header, row])
    if args.case == "provision":
        print(f"provision {label}p50/p95 ms: tenantmig {s['provision_tm_p50'] * 1000:.1f}/"
              f"{s['provision_tm_p95'] * 1000:.1f}, floor {s['provision_floor_p50'] * 1000:.1f}/"
              f"{s['provision_floor_p95'] * 1000:.1f}; ratio = p95 tenantmig / p95 floor")
    if args.repeat > 1:
        print("(ratio: median of the per-repeat ratios; peak RSS: the highest)")
    if mode == "api":
        print("(api mode: peak RSS is this whole bench process's)")
    print_cpu(results, label)
    if timer is not None:
        print("\nphases (API mode, summed over the timed runs):")
        for name, total in timer.totals.items():
            print(f"  {name:48s} {total:8.3f}s  ({timer.counts[name]} calls)")
        for missing in sorted(timer.missing):
            print(f"  (not found, not timed: {missing})")
    if args.profile:
        print(f"\ncProfile of the first timed call: {args.profile} (top 15 by cumulative time)")
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
                    "case": args.case,
                    "case_description": describe_case(args),
                    "mode": mode,
                    "mode_note": mode_note,
                    "cli_startup_seconds": startup,
                    "repeats": [asdict(r) for r in results],
                    "median": s,
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
    if args.max_ratio is not None and s["ratio"] is not None and s["ratio"] > args.max_ratio:
        print(f"ratio {s['ratio']:.2f} exceeds --max-ratio {args.max_ratio}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
