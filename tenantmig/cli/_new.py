"""``tenantmig new DESCRIPTION [--pattern NAME ...]``: write the next migration file(s).

Without ``--pattern``: one empty ``V<next>__<slug>.sql`` with a commented header. With a
pattern: the files of that safe multi-step change (see :mod:`tenantmig.templates`), then the
linter's findings about them. Exit 0, or 2 with one line on a bad parameter, an unknown
pattern or a file that already exists; never a traceback.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console

from .._exceptions import ConfigError, TemplateError, TenantmigError
from ..config import Config
from ..lint import blocking, lint_migrations
from ..source import load_migrations
from ..templates import PATTERNS, create
from . import _render

EXIT_OK, EXIT_USAGE = 0, 2

_ALIASES: tuple[tuple[str, str, str], ...] = (
    # (option, parameter, help)
    ("--table", "table", "the table"),
    ("--column", "column", "the column"),
    ("--to-type", "to_type", "the new type (widen-column, change-column-type)"),
    ("--from-type", "from_type", "the current type (widen-column, when no migration declares "
     "it)"),
    ("--using", "using", "SQL expression computing the new value (change-column-type)"),
    ("--columns", "columns", "comma separated columns (concurrent-index, unique-constraint)"),
    ("--ref-table", "ref_table", "the referenced table (foreign-key)"),
    ("--ref-column", "ref_column", "the referenced column (foreign-key; default id)"),
    ("--type-name", "type_name", "the enum type (enum-value)"),
    ("--value", "value", "the new enum value (enum-value)"),
    ("--partition-key", "partition_key", "the column to partition by (partition-table)"),
    ("--expression", "expression", "SQL expression for the new value (backfill)"),
    ("--where", "where", "SQL condition selecting the rows (backfill)"),
    ("--name", "name", "index or constraint name"),
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the options of ``tenantmig new`` to its sub-parser (``--migrations`` and the other
    common options come from the shared parent parser)."""
    parser.add_argument("description", nargs="?", metavar="DESCRIPTION",
                        help="what the migration does; becomes the file name")
    parser.add_argument("--pattern", choices=sorted(PATTERNS), metavar="NAME",
                        help="write a safe multi-step pattern: " + ", ".join(sorted(PATTERNS)))
    parser.add_argument("--list-patterns", action="store_true",
                        help="list the patterns and their parameters")
    parser.add_argument("--param", action="append", default=[], metavar="KEY=VALUE",
                        help="a pattern parameter (repeatable)")
    for option, key, text in _ALIASES:
        parser.add_argument(option, dest=f"param_{key}", metavar="VALUE",
                            help=f"{text} (= --param {key}=VALUE)")
    parser.add_argument("--unique", dest="param_unique", action="store_const", const="true",
                        help="a unique index (concurrent-index)")


def _params(args: argparse.Namespace) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in args.param or ():
        key, sep, value = str(item).partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise ConfigError(f"--param {item!r}: expected KEY=VALUE")
        if key in params and params[key] != value:
            raise ConfigError(f"--param {key} given twice with different values")
        params[key] = value
    for name, value in vars(args).items():
        if not name.startswith("param_") or value is None:
            continue
        key = name[len("param_"):]
        if key in params and params[key] != value:
            raise ConfigError(f"{key} given both as --param and as an option, with different "
                              "values")
        params[key] = str(value)
    return params


def _list(out: Console) -> None:
    for name in sorted(PATTERNS):
        pattern = PATTERNS[name]
        out.print(f"{name}: {pattern.summary}", markup=False)
        out.print(f"    parameters: {pattern.describe()}", markup=False)


def run_new(args: argparse.Namespace, config: Config) -> int:
    """Write the migration file(s) into ``config.migrations``, print their paths and lint
    them; 0, or 2 with one line on stderr."""
    out = _render.console()
    err = _render.console(stderr=True)
    if getattr(args, "list_patterns", False):
        _list(out)
        return EXIT_OK
    directory = Path(config.migrations)
    try:
        if not args.description or not str(args.description).strip():
            raise ConfigError("give a DESCRIPTION (e.g. tenantmig new 'add customer email'), "
                              "or --list-patterns")
        pattern = args.pattern
        if pattern is not None and pattern not in PATTERNS:
            raise TemplateError(f"unknown pattern {pattern!r}; known: "
                                + ", ".join(sorted(PATTERNS)))
        paths = create(directory, pattern, str(args.description), _params(args))
    # TemplateError or ConfigError: a refused parameter or option; OSError: a file that
    # exists (FileExistsError) or a folder that cannot be written; ValueError: a path Python
    # refuses (a NUL byte). One line each, never a traceback.
    except (TenantmigError, ValueError, OSError) as exc:
        message = " ".join(str(exc).split())
        err.print(f"tenantmig: error: {message}", markup=False)
        return EXIT_USAGE
    for path in paths:
        out.print(str(path), markup=False)
    if pattern is None:
        out.print("Write the migration in it (every tenant object as {{schema}}.name), then "
                  "run tenantmig lint.", markup=False)
        return EXIT_OK
    _lint(out, directory, paths, config)
    return EXIT_OK


def _lint(out: Console, directory: Path, paths: list[Path], config: Config) -> None:
    """Print what the linter says about the new files (they are linted with the whole folder,
    whose earlier migrations tell what exists)."""
    names = {path.name for path in paths}
    try:
        findings = lint_migrations(load_migrations(directory),
                                   shared_schemas=config.options.shared_schemas)
    except TenantmigError as exc:
        out.print(f"Not linted: the folder does not load yet: {exc}", markup=False)
        return
    except Exception as exc:  # the linter must never turn a written file into a traceback
        out.print(f"Not linted: {type(exc).__name__}: {exc}", markup=False)
        return
    ours = [f for f in findings if Path(f.path).name in names]
    for finding in ours:
        if finding.allowed is None:
            out.print(str(finding), markup=False)
    unsafe = blocking(ours)
    accepted = sum(1 for f in ours if f.allowed is not None)
    out.print(f"Lint: {len(unsafe)} error(s), "
              f"{sum(1 for f in ours if not f.blocking and f.allowed is None)} warning(s), "
              f"{accepted} accepted with tenantmig:allow.", markup=False)
