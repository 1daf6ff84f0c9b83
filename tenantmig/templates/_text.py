"""The text of generated files: wrapped comment headers, directives, Python docstrings."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence

from .._exceptions import TemplateError

WIDTH = 92
"""Generated lines stay within this many characters."""

CONCURRENT_BUILD_NOTES = """
    It cannot run in a transaction (25001), hence the no-transaction header, and it stays the
    only statement here: a multi-statement query string is an implicit transaction. The build
    waits for every older transaction in the database, so a long-running transaction delays
    it (without blocking anyone else).

    A failed build leaves an INVALID index that still slows writes and that IF NOT EXISTS
    would silently keep; the engine drops it before a retry or a resume.
"""
"""What every ``CREATE INDEX CONCURRENTLY`` file says about running it."""


def comment(text: str) -> str:
    """Paragraphs (blank-line separated) as wrapped ``--`` comment lines."""
    lines: list[str] = []
    for paragraph in textwrap.dedent(text).strip().split("\n\n"):
        paragraph = paragraph.strip()
        if paragraph.startswith("*"):  # a bulleted list: one bullet per "* " line
            for bullet in re.split(r"\n\s*(?=\* )", paragraph):
                wrapped = textwrap.wrap(
                    " ".join(bullet[2:].split()), WIDTH - 5,
                    break_long_words=False, break_on_hyphens=False,
                )
                lines += ["-- * " + wrapped[0]] + ["--   " + w for w in wrapped[1:]]
        else:
            wrapped = textwrap.wrap(
                " ".join(paragraph.split()), WIDTH - 3,
                break_long_words=False, break_on_hyphens=False,
            )
            lines += ["-- " + w for w in wrapped]
        lines.append("--")
    lines.pop()
    for line in lines:  # prose must never read as a directive
        if line.startswith("-- tenantmig:"):
            raise TemplateError(f"this text would read as a tenantmig directive: {line}")
    return "\n".join(lines)


def allow(rule: str, reason: str) -> str:
    """An allow comment line (for a statement in a body)."""
    return f"-- tenantmig:allow {rule} {reason}"


def sql_file(header: str, body: str, *, directives: Sequence[str] = ()) -> str:
    """A SQL migration: header directives, *header* as comment lines, then *body*."""
    parts = [f"-- tenantmig:{d}" for d in directives]
    parts.append(comment(header))
    parts.append(textwrap.dedent(body).strip())
    return "\n".join(parts) + "\n"


def _docstring(text: str) -> str:
    paragraphs = textwrap.dedent(text).strip().split("\n\n")
    out = []
    for paragraph in paragraphs:
        out.append(
            "\n".join(
                textwrap.wrap(" ".join(paragraph.split()), WIDTH - 4,
                              break_long_words=False, break_on_hyphens=False)
            )
        )
    body = "\n\n".join(out).replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    return f'"""{body}\n"""'


def py_file(doc: str, code: str) -> str:
    """A Python migration: *doc* as its module docstring, then *code*."""
    return _docstring(doc) + "\n\n" + textwrap.dedent(code).strip() + "\n"


def blank(description: str) -> str:
    """The one file ``tenantmig new`` writes without a pattern: a header and a reminder of the
    directives, no statement."""
    return sql_file(
        f"""
        {description}

        Write the migration below. Every tenant object must be qualified as {{{{schema}}}}.name
        (the migration runs once per tenant schema, with an empty search_path); objects shared
        by all tenants are written their_schema.name. Each statement that rewrites or scans a
        busy table belongs in a migration of its own: see tenantmig new --list-patterns, and
        run tenantmig lint.
        """,
        """
        --
        -- Header directives go on their own comment lines above the first statement, written
        -- without the leading "--   " shown here:
        --   -- tenantmig:lock-timeout=5s         lock_timeout of this migration
        --   -- tenantmig:statement-timeout=5min  statement_timeout of this migration
        --   -- tenantmig:no-transaction          each statement on its own, outside a
        --                                        transaction (CREATE INDEX CONCURRENTLY)
        -- A lint finding accepted on purpose: a comment line right above the statement,
        --   -- tenantmig:allow RULE-ID why this is safe here
        """,
    )
