"""``tenantmig lint``: the safety checks, without a database."""

from __future__ import annotations

import argparse
from dataclasses import asdict

from ..config import Config
from ..lint import (
    RULES,
    LintState,
    accept_history,
    blocking,
    fix_qualifiers,
    lint_migrations,
)
from ..source import load_migrations, sql_files
from . import _render

EXIT_OK, EXIT_UNSAFE = 0, 2


def run_lint(args: argparse.Namespace, config: Config) -> int:
    """Print every finding as ``file:line rule: message``; exit 2 on an unaccepted error."""
    out = _render.console()
    if args.list:
        for rule_id, rule in sorted(RULES.items()):
            out.print(f"{rule_id}: {rule.listing}", markup=False)
        return EXIT_OK
    fixed: list[str] = []
    if args.fix:
        # Before loading: a file ported from elsewhere that never names {{schema}} is
        # exactly what --fix is for, and loading would refuse it.
        texts = {path: path.read_text(encoding="utf-8")
                 for path in sql_files(config.migrations)}
        # The functions and sequences the folder creates, whatever its order: their calls
        # are qualified too (the others are built-in, or an extension's).
        created = LintState()
        for text in texts.values():
            created = created.after(text)
        for path, text in texts.items():
            new = fix_qualifiers(text, shared_schemas=config.options.shared_schemas,
                                 earlier=created)
            if new != text:
                path.write_text(new, encoding="utf-8")
                fixed.append(str(path))
        if fixed and not args.json:
            for name in fixed:
                out.print(f"fixed {name}", markup=False)
            out.print(f"{len(fixed)} file(s) changed: their checksums changed too, so only "
                      "do this before they are applied anywhere.")
    migrations = load_migrations(config.migrations)
    findings = accept_history(
        lint_migrations(migrations, shared_schemas=config.options.shared_schemas),
        migrations, config.options.lint_after)
    unsafe = blocking(findings)
    if args.json:
        out.print_json(_render.dumps({
            "findings": [asdict(f) | {"blocking": f.blocking} for f in findings],
            "blocking": len(unsafe),
            **({"fixed": fixed} if args.fix else {}),
        }))
    else:
        for finding in findings:
            out.print(str(finding), markup=False)
        accepted = sum(1 for f in findings if f.allowed is not None)
        warnings = sum(1 for f in findings if not f.blocking and f.allowed is None)
        out.print(f"{len(migrations.migrations)} migration(s) checked: {len(unsafe)} error(s), "
                  f"{warnings} warning(s), {accepted} accepted with tenantmig:allow.")
    return EXIT_UNSAFE if unsafe else EXIT_OK
