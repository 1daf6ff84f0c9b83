"""``-- tenantmig:allow RULE-ID reason``: which findings each allow comment covers."""

from __future__ import annotations

from collections.abc import Collection, Sequence

from ..source import Allow
from ._common import WARNING, Finding, Raw, Rule, Text

UNUSED_ALLOW = Rule(
    "unused-allow",
    "a -- tenantmig:allow comment that matches no finding (or names an unknown rule)",
    WARNING,
    "files",
)
"""Reported here, for each allow comment that covers nothing."""

_ALLOW_PREFIX = "-- tenantmig:allow "


def parse_allows(text: str) -> list[Allow]:
    """The ``-- tenantmig:allow RULE reason`` lines of *text* (as the loader reads them)."""
    found = []
    for number, line in enumerate(text.split("\n"), start=1):
        stripped = line.strip()
        if stripped.startswith(_ALLOW_PREFIX):
            rule, _, reason = stripped[len(_ALLOW_PREFIX) :].strip().partition(" ")
            if rule and reason.strip():
                found.append(Allow(number, rule, reason.strip()))
    return found


def apply_allows(
    source: Text, path: str, raw: list[Raw], allows: Sequence[Allow], known: Collection[str]
) -> list[Finding]:
    """The findings of *raw*, each at its statement's first line and with the reason of an
    allow comment covering it, if any, and an ``unused-allow`` warning for each allow that
    covers nothing; *known* are the rule ids an allow may name.

    An allow in the header (before the first statement) covers the whole file; one inside a
    statement (between its first and last line) covers that statement; any other covers the
    first statement after it. Never the statement after the one it stands in: an allow
    written inside a multi-line ``ALTER TABLE`` must not accept the next statement's findings.
    """
    spans = sorted(
        [(source.line(s.start), source.line(s.end), s.index) for s in source.statements]
        + [(source.line(b.start), source.line(b.end), b.index) for b in source.broken]
    )
    first_lines = {index: first for first, _, index in spans}
    scopes = [_scope(allow.line, spans) for allow in allows]
    used: set[int] = set()
    findings: list[Finding] = []
    seen: set[tuple[int, int, str, str]] = set()
    for index, offset, rule, message, severity in raw:
        line = first_lines.get(index, source.line(offset))
        if (index, line, rule, message) in seen:
            continue
        seen.add((index, line, rule, message))
        reason = None
        for number, allow in enumerate(allows):
            if allow.rule == rule and scopes[number] in (_FILE, index):
                used.add(number)
                reason = reason or allow.reason
        findings.append(Finding(path, line, rule, message, severity, reason))
    for number, allow in enumerate(allows):
        if number in used:
            continue
        if allow.rule not in known:
            message = f"tenantmig:allow names no known rule {allow.rule!r} — check the rule id"
        else:
            message = (
                f"tenantmig:allow {allow.rule} matches no finding in the statement it stands "
                "above or inside (or the file, from the header) — remove it"
            )
        findings.append(
            Finding(path, allow.line, UNUSED_ALLOW.id, message, UNUSED_ALLOW.severity)
        )
    findings.sort(key=lambda f: (f.line, f.rule))
    return findings


_FILE = -1
"""The scope of an allow in the header: every statement of the file."""


def _scope(line: int, spans: Sequence[tuple[int, int, int]]) -> int | None:
    """The index of the statement an allow at *line* covers (:data:`_FILE`: all of them;
    None: none, after the last statement); *spans* are (first line, last line, index)."""
    if not spans or line < spans[0][0]:
        return _FILE
    for first, last, index in spans:
        if first < line <= last or line < first:
            return index
    return None
