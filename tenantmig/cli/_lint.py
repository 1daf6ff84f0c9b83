"""``tenantmig lint``: the safety checks, without a database."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from ..config import Config
from ..lint import RULES, blocking, fix_qualifiers, lint_migrations
from ..source import load_migrations
from . import _render

EXIT_OK, EXIT_UNSAFE = 0, 2


def run_lint(args: argparse.Namespace, config: Config) -> int:
    """Print every finding as ``file:line rule: message``; exit 2 on an unaccepted error."""
    out = _render.console()
    if args.list:
        for rule, description in sorted(RULES.items()):
            out.print(f"{rule}: {description}", markup=False)
        return EXIT_OK
    migrations = load_migrations(config.migrations)
    if args.fix:
        changed = 0
        for m in migrations.migrations:
            for step in (m.up, m.down):
                if step is None or step.sql is None:
                    continue
                fixed = fix_qualifiers(step.path.read_text(encoding="utf-8"),
                                       shared_schemas=config.shared_schemas)
                if fixed != step.path.read_text(encoding="utf-8"):
                    step.path.write_text(fixed, encoding="utf-8")
                    out.print(f"fixed {step.path}", markup=False)
                    changed += 1
        if changed:
            out.print(f"{changed} file(s) changed: their checksums changed too, so only do "
                      "this before they are applied anywhere.")
        migrations = load_migrations(config.migrations)
    findings = lint_migrations(migrations, shared_schemas=config.shared_schemas)
    unsafe = blocking(findings)
    if args.json:
        out.print_json(_render.dumps({
            "findings": [asdict(f) | {"blocking": f.blocking} for f in findings],
            "blocking": len(unsafe),
        }))
    else:
        for finding in findings:
            out.print(str(finding), markup=False)
        accepted = sum(1 for f in findings if f.allowed is not None)
        warnings = sum(1 for f in findings if not f.blocking and f.allowed is None)
        out.print(f"{len(migrations.migrations)} migration(s) checked: {len(unsafe)} error(s), "
                  f"{warnings} warning(s), {accepted} accepted with tenantmig:allow.")
    return EXIT_UNSAFE if unsafe else EXIT_OK
