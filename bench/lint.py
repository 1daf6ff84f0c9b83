"""``tenantmig lint`` of a large folder: it must stay under a second (issue 15).

```sh
.venv/bin/python bench/lint.py [--files 300] [--repeat 5] [--max-seconds 1.0] [--keep DIR]
```

Writes a folder of *files* realistic migrations (tables, ``ADD COLUMN``, ``CREATE INDEX
CONCURRENTLY`` alone in ``no-transaction`` files, views, functions, a few undo files), then
times the command as CI runs it (``python -m tenantmig lint --format github``, a fresh
process each time: start-up, loading, parsing and every rule) and, apart, loading and
linting inside one process. Prints the median of *repeat* runs of each; exit 1 when the
command's median CPU time (user + system) exceeds *max-seconds*: on a quiet machine that
is its wall time, and on a shared one the wall time mostly measures the other work. No
database.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

_TABLE = """-- {n}: a table of its own
CREATE TABLE {{{{schema}}}}.t{n} (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX t{n}_created ON {{{{schema}}}}.t{n} (created_at);
"""
_COLUMN = """ALTER TABLE {{{{schema}}}}.t{table} ADD COLUMN IF NOT EXISTS note{n} text;
COMMENT ON COLUMN {{{{schema}}}}.t{table}.note{n} IS 'free text, added in {n}';
"""
_COLUMN_UNDO = "-- tenantmig:allow drop-column the undo of {n}: only the column it added\n" \
    "ALTER TABLE {{{{schema}}}}.t{table} DROP COLUMN IF EXISTS note{n};\n"
_INDEX = """-- tenantmig:no-transaction
-- tenantmig:lock-timeout=2s
CREATE INDEX CONCURRENTLY IF NOT EXISTS t{table}_name{n} ON {{{{schema}}}}.t{table} (name);
"""
_VIEW = """CREATE OR REPLACE VIEW {{{{schema}}}}.v{n} AS
    SELECT t.id, t.name, t.created_at
    FROM {{{{schema}}}}.t{table} AS t
    WHERE t.created_at > '2020-01-01'::timestamptz;
"""
_FUNCTION = """CREATE OR REPLACE FUNCTION {{{{schema}}}}.f{n}(x integer) RETURNS integer
    LANGUAGE sql IMMUTABLE AS $$ SELECT x * 2 + {n} $$;
"""


def write_folder(folder: Path, files: int) -> int:
    """*files* migrations (V files; every ADD COLUMN also gets its undo file) in *folder*;
    returns how many files were written in all."""
    folder.mkdir(parents=True, exist_ok=True)
    written, table = 0, 1
    for version in range(1, files + 1):
        kind = version % 5
        if kind == 1:
            table = version
            name, text = "table", _TABLE.format(n=version)
        elif kind == 2:
            name, text = "column", _COLUMN.format(n=version, table=table)
            (folder / f"U{version}__{name}.sql").write_text(
                _COLUMN_UNDO.format(n=version, table=table), encoding="utf-8")
            written += 1
        elif kind == 3:
            name, text = "index", _INDEX.format(n=version, table=table)
        elif kind == 4:
            name, text = "view", _VIEW.format(n=version, table=table)
        else:
            name, text = "function", _FUNCTION.format(n=version)
        (folder / f"V{version}__{name}.sql").write_text(text, encoding="utf-8")
        written += 1
    return written


def _cpu_of_children() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _time_command(
    argv: list[str],
) -> tuple[float, float, subprocess.CompletedProcess[str]]:
    """Wall and CPU seconds of one ``python -m tenantmig ARGV``: on a shared machine the
    CPU time is the steadier figure."""
    cpu, started = _cpu_of_children(), time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "tenantmig", *argv],
                          capture_output=True, text=True, timeout=120, check=False)
    return time.perf_counter() - started, _cpu_of_children() - cpu, done


def _time_in_process(folder: Path) -> tuple[float, int]:
    from tenantmig.lint import lint_migrations
    from tenantmig.source import load_migrations_partially

    started = time.perf_counter()
    migrations, problems = load_migrations_partially(folder)
    findings = lint_migrations(migrations)
    return time.perf_counter() - started, len(problems) + len(findings)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--max-seconds", type=float, default=1.0)
    parser.add_argument("--keep", type=Path, help="write the folder here and keep it")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.keep or Path(scratch) / "migrations"
        written = write_folder(folder, args.files)
        commands, cpus, start_ups, in_process = [], [], [], []
        findings = 0
        lint = ["lint", "--format", "github", "--migrations", str(folder)]
        for _ in range(args.repeat):
            seconds, cpu, done = _time_command(lint)
            if done.returncode not in (0, 2):
                print(done.stdout, done.stderr, sep="\n", file=sys.stderr)
                return 1
            commands.append(seconds)
            cpus.append(cpu)
            start_ups.append(_time_command(["lint", "--list"])[1])
            seconds, findings = _time_in_process(folder)
            in_process.append(seconds)
    median = statistics.median(cpus)
    print(f"{args.files} migrations ({written} files), {findings} finding(s)")
    print(f"tenantmig lint --format github: median {statistics.median(commands):.3f} s wall "
          f"of {args.repeat} (min {min(commands):.3f}, max {max(commands):.3f}), "
          f"median {median:.3f} s CPU")
    print(f"  of which start-up (lint --list): {statistics.median(start_ups):.3f} s CPU")
    print(f"load + lint in one process:     median {statistics.median(in_process):.3f} s "
          f"(min {min(in_process):.3f}, max {max(in_process):.3f})")
    if median > args.max_seconds:
        print(f"over the {args.max_seconds} s budget", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
