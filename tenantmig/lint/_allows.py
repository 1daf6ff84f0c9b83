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
    """The findings of *raw*, each with the reason of an allow comment covering it, if any,
    and an ``unused-allow`` warning for each allow that covers nothing; *known* are the rule
    ids an allow may name."""
    starts = sorted(
        [(source.line(s.start), s.index) for s in source.statements]
        + [(source.line(b.start), b.index) for b in source.broken]
    )
    first = starts[0][0] if starts else None
    scopes: list[tuple[Allow, int | None, bool]] = []  # allow, statement index, file-wide
    for allow in allows:
        if first is None or allow.line < first:
            scopes.append((allow, None, True))
        else:
            after = [index for line, index in starts if line > allow.line]
            scopes.append((allow, after[0] if after else None, False))
    used: set[int] = set()
    findings: list[Finding] = []
    seen: set[tuple[int, int, str, str]] = set()
    for index, offset, rule, message, severity in raw:
        line = source.line(offset)
        if (index, line, rule, message) in seen:
            continue
        seen.add((index, line, rule, message))
        reason = None
        for number, (allow, scope, file_wide) in enumerate(scopes):
            if allow.rule == rule and (file_wide or scope == index):
                used.add(number)
                reason = reason or allow.reason
        findings.append(Finding(path, line, rule, message, severity, reason))
    for number, (allow, _, _) in enumerate(scopes):
        if number in used:
            continue
        if allow.rule not in known:
            message = f"tenantmig:allow names no known rule {allow.rule!r} — check the rule id"
        else:
            message = (
                f"tenantmig:allow {allow.rule} matches no finding in the statement after it "
                "(or the file, from the header) — remove it"
            )
        findings.append(
            Finding(path, allow.line, UNUSED_ALLOW.id, message, UNUSED_ALLOW.severity)
        )
    findings.sort(key=lambda f: (f.line, f.rule))
    return findings
