"""tenantmig as the user runs it: the CLI in a subprocess, or the public Python API.

Only public surface is used: ``python -m tenantmig``, ``tenantmig.Engine`` and
``tenantmig.provision``.
"""

from __future__ import annotations

import asyncio
import cProfile
import importlib.util
import os
import resource
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass
class TmResult:
    seconds: float
    ok: bool
    detail: str = ""
    max_rss_mib: float | None = None
    """Peak resident memory: of the CLI process (cli), of this whole process (api)."""


def probe_cli() -> str | None:
    """None when ``python -m tenantmig up --help`` works, else why not."""
    if importlib.util.find_spec("tenantmig.__main__") is None:
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


def cli_command(
    command: str, dsn: str, migrations: Path, concurrency: int, *, atomic: bool
) -> list[str]:
    cmd = [sys.executable, "-m", "tenantmig", command, "--dsn", dsn,
           "--migrations", str(migrations), "--log-format", "json"]
    if command == "up":
        cmd += ["--concurrency", str(concurrency)]
        if atomic:
            cmd.append("--atomic-tenant")
    return cmd


def start_cli(cmd: list[str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("w", encoding="utf-8") as log:
        # cwd: a folder without tenantmig.toml/pyproject.toml, so no config file is picked up
        return subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            cwd=log_path.parent,
        )


def wait_cli(proc: subprocess.Popen[bytes], t0: float, log_path: Path) -> TmResult:
    """Reap *proc* with its own resource usage (RUSAGE_CHILDREN would be the peak of every
    child so far, not of this one)."""
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss = usage.ru_maxrss / 1024  # KiB on Linux
    if proc.returncode != 0:
        tail = "\n".join(log_path.read_text(errors="replace").splitlines()[-20:])
        return TmResult(seconds, False, f"exit {proc.returncode}; output tail:\n{tail}", rss)
    return TmResult(seconds, True, "", rss)


def tm_cli(
    command: str, dsn: str, migrations: Path, concurrency: int, log_path: Path, *, atomic: bool
) -> TmResult:
    cmd = cli_command(command, dsn, migrations, concurrency, atomic=atomic)
    t0 = time.perf_counter()
    return wait_cli(start_cli(cmd, log_path), t0, log_path)


_logging_configured = False


def configure_api_logging(log_path: Path) -> None:
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


async def _tm_api_async(
    command: str, dsn: str, migrations: Path, concurrency: int, *, atomic: bool
) -> TmResult:
    from tenantmig import Engine

    t0 = time.perf_counter()
    async with Engine(
        dsn, migrations=migrations, concurrency=concurrency, atomic_tenant=atomic
    ) as engine:
        if command == "status":
            await engine.status()
            return TmResult(time.perf_counter() - t0, True)
        report = await engine.upgrade()
    seconds = time.perf_counter() - t0
    if not report.ok:
        failed = report.failed[:3]
        detail = "; ".join(f"{o.tenant} V{o.failing_version}: {o.message}" for o in failed)
        return TmResult(seconds, False, f"{report.counts()} {detail}")
    return TmResult(seconds, True)


def tm_api(
    command: str,
    dsn: str,
    migrations: Path,
    concurrency: int,
    log_path: Path,
    *,
    atomic: bool,
    profile_path: Path | None = None,
) -> TmResult:
    configure_api_logging(log_path)
    profiler = cProfile.Profile() if profile_path is not None else None
    if profiler is not None:
        profiler.enable()
    try:
        result = asyncio.run(_tm_api_async(command, dsn, migrations, concurrency, atomic=atomic))
    finally:
        if profiler is not None and profile_path is not None:
            profiler.disable()
            profiler.dump_stats(profile_path)
    result.max_rss_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return result


async def provision_api(dsn: str, schema: str, migrations: Path) -> float:
    """Seconds for ``tenantmig.provision()`` of one new tenant (it opens its own pool)."""
    from tenantmig import provision

    t0 = time.perf_counter()
    report: Any = await provision(dsn, schema, migrations=migrations)
    seconds = time.perf_counter() - t0
    if not report.ok:
        raise SystemExit(f"provision({schema!r}) failed: {report.counts()}")
    return seconds
