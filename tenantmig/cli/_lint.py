"""``tenantmig lint``: the safety checks, without a database unless asked for one.

One run reports everything: the problems of the files that do not load (as findings of
rule ``load``) and the findings of every file that does, sorted by file and line, in the
format asked for (``text``, ``json``, or a CI's own: ``github``, ``sarif``).

With ``--dsn`` on the command line, or ``--catalog`` (the configured database), the
targeted tenants' catalog is read first (one query per database), so the tables no
migration created are known as the tenants hold them. A DSN that only the config file or
``$TENANTMIG_DSN`` gives is not used without ``--catalog``: lint in CI stays offline.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from .. import __version__
from .._exceptions import ConfigError, Problem
from ..config import Config
from ..discovery import merge_tenants
from ..engine import Engine
from ..lint import (
    HISTORY_REASON,
    RULES,
    Catalog,
    Finding,
    LintState,
    accept_history,
    blocking,
    fix_qualifiers,
    lint_migrations,
)
from ..source import MigrationSet, load_migrations_partially, sql_files
from . import _lint_formats, _render
from ._lint_explain import KNOWN, LOAD, explain

EXIT_OK, EXIT_UNSAFE = 0, 2

FORMATS = ("text", "json", "github", "sarif")
"""What ``--format`` takes; ``--json`` is ``--format json``."""

_UNDO = re.compile(r"^U\d|\.down\.|^down\.sql$")


def run_lint(args: argparse.Namespace, config: Config) -> int:
    """Print every load problem and finding as ``file:line rule: message`` (or in *format*);
    exit 2 when any of them blocks."""
    out = _render.console()
    if args.list:
        for rule_id, rule in sorted(RULES.items()):
            out.print(f"{rule_id}: {rule.listing}", markup=False)
        return EXIT_OK
    if args.explain is not None:
        return explain(out, args.explain)
    form = _format(args)
    fixed = _fix(config) if args.fix else []
    if fixed and form == "text":
        for name in fixed:
            out.print(f"fixed {name}", markup=False)
        out.print(f"{len(fixed)} file(s) changed: their checksums changed too, so only "
                  "do this before they are applied anywhere.")
    catalog = _catalog(args, config)
    migrations, problems = load_migrations_partially(config.migrations)
    findings = sorted(
        [*map(_as_finding, problems),
         *accept_history(lint_migrations(migrations, shared_schemas=config.options.shared_schemas,
                                         catalog=catalog),
                         migrations, config.options.lint_after)],
        key=_order)
    unsafe = blocking(findings)
    if form == "json":
        out.print_json(_render.dumps({
            "findings": [asdict(f) | {"blocking": f.blocking} for f in findings],
            "blocking": len(unsafe),
            **({"fixed": fixed} if args.fix else {}),
        }))
    elif form == "github":
        for line in _lint_formats.github(findings):
            out.print(line, markup=False)
    elif form == "sarif":
        # Not print_json: rich would colour it on a terminal and SARIF files are redirected.
        out.print(json.dumps(_lint_formats.sarif(findings, KNOWN, version=__version__),
                             indent=2, ensure_ascii=False), markup=False)
    else:
        for finding in findings:
            out.print(str(finding), markup=False)
        out.print(_summary(len(migrations.migrations), findings, len(problems)))
    return EXIT_UNSAFE if unsafe else EXIT_OK


def _catalog(args: argparse.Namespace, config: Config) -> Catalog | None:
    """The targeted tenants' catalog, when ``--dsn`` or ``--catalog`` asks for it."""
    if not (args.dsn or args.catalog):
        return None
    if not config.dsns:
        raise ConfigError("lint --catalog needs a database: give --dsn, set TENANTMIG_DSN, "
                          "or put dsn in tenantmig.toml")
    explicit = merge_tenants(args.tenant, args.tenants_file) or None
    return asyncio.run(_read_catalogs(config, explicit, args.exclude))


async def _read_catalogs(config: Config, explicit: Sequence[str] | None,
                         exclude: Sequence[str]) -> Catalog:
    """Each database's targeted tenants (as ``up`` targets them), their catalogs as one."""
    catalog = Catalog(())
    for dsn in config.dsns:
        engine = Engine(dsn, migrations=MigrationSet(config.migrations, ()),
                        options=config.options)
        try:
            names = await engine.tenants(explicit, exclude=exclude)
            catalog = catalog.merged(await engine.catalog(names))
        finally:
            await engine.close()
    return catalog


def _format(args: argparse.Namespace) -> str:
    if args.json and args.format not in (None, "json"):
        raise ConfigError(f"--json is --format json; it cannot go with --format {args.format}")
    form: str = args.format or ("json" if args.json else "text")
    return form


def _fix(config: Config) -> list[str]:
    # Before loading: a file ported from elsewhere is exactly what --fix is for, even one
    # the loader would refuse.
    texts = {path: path.read_text(encoding="utf-8") for path in sql_files(config.migrations)}
    # The functions and sequences the folder creates, whatever its order: their calls are
    # qualified too (the others are built-in, or an extension's).
    created = LintState()
    for text in texts.values():
        created = created.after(text)
    fixed: list[str] = []
    for path, text in texts.items():
        new = fix_qualifiers(text, shared_schemas=config.options.shared_schemas,
                             earlier=created)
        if new != text:
            path.write_text(new, encoding="utf-8")
            fixed.append(str(path))
    return fixed


def _as_finding(problem: Problem) -> Finding:
    """A load problem as a finding of rule ``load``: it always blocks."""
    return Finding(problem.path, problem.line, LOAD.id, problem.message, LOAD.severity)


def _order(finding: Finding) -> tuple[int, int, str, int]:
    """By file in version order (a version's undo after its up; every layout's names start
    with their version, diesel's folder names too), then by line."""
    path = Path(finding.path)
    named = path.name if re.search(r"\d", path.name) else path.parent.name
    version = re.search(r"\d+", named)
    return (int(version[0]) if version else -1, 1 if _UNDO.search(path.name) else 0,
            finding.path, finding.line)


def _summary(checked: int, findings: list[Finding], not_loaded: int) -> str:
    errors = sum(1 for f in findings if f.blocking)
    history = sum(1 for f in findings if f.allowed is not None
                  and f.allowed.startswith(HISTORY_REASON))
    accepted = sum(1 for f in findings if f.allowed is not None) - history
    warnings = sum(1 for f in findings if not f.blocking and f.allowed is None)
    load = f", {not_loaded} load problem(s) among them" if not_loaded else ""
    past = f", {history} in history up to --lint-after" if history else ""
    return (f"{checked} migration(s) checked: {errors} error(s){load}, {warnings} warning(s), "
            f"{accepted} accepted with tenantmig:allow{past}.")
