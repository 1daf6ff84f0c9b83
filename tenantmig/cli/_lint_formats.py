"""Lint findings in the formats CI systems read: GitHub Actions workflow commands and
SARIF 2.1.0 (GitHub code scanning and others)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"


class Reported(Protocol):
    """What a finding (or a load problem) must say to be rendered."""

    @property
    def path(self) -> str: ...
    @property
    def line(self) -> int: ...
    @property
    def rule(self) -> str: ...
    @property
    def message(self) -> str: ...
    @property
    def severity(self) -> str: ...
    @property
    def blocking(self) -> bool: ...


class Described(Protocol):
    @property
    def summary(self) -> str: ...
    @property
    def severity(self) -> str: ...


def relative(path: str, root: Path | None = None) -> str:
    """*path* relative to *root* (default: the current directory) with forward slashes,
    as both formats want; unchanged when it lies elsewhere."""
    base = (root or Path.cwd()).resolve()
    try:
        rel = Path(path).resolve().relative_to(base)
    except ValueError:
        return Path(path).as_posix()
    return rel.as_posix()


def _escape_data(text: str) -> str:
    # https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github(findings: Sequence[Reported], root: Path | None = None) -> list[str]:
    """One ``::error`` / ``::warning`` / ``::notice`` workflow command per finding, so each
    appears on the pull request's diff at its line. A finding that does not block
    (accepted, or a warning) is a warning or a notice, never an error."""
    lines = []
    for f in findings:
        level = "error" if f.blocking else "warning" if f.severity == "warning" else "notice"
        props = ",".join((
            f"file={_escape_property(relative(f.path, root))}",
            f"line={max(1, f.line)}",
            f"title={_escape_property(f.rule)}",
        ))
        lines.append(f"::{level} {props}::{_escape_data(f.message)}")
    return lines


def _level(f: Reported) -> str:
    return "error" if f.blocking else "warning" if f.severity == "warning" else "note"


def sarif(
    findings: Sequence[Reported],
    rules: Mapping[str, Described],
    *,
    version: str,
    root: Path | None = None,
) -> dict[str, Any]:
    """A SARIF 2.1.0 log of one run: ``tool.driver.rules`` lists every rule a result names
    (with its summary and where its page is), each result has ``ruleId``, ``ruleIndex``, ``level``,
    ``message.text`` and a physical location (the file's URI relative to the checkout, and
    the line)."""
    used = sorted({f.rule for f in findings})
    index = {rule: i for i, rule in enumerate(used)}
    driver_rules = []
    for rule in used:
        described = rules.get(rule)
        summary = described.summary if described is not None else rule
        severity = described.severity if described is not None else "error"
        driver_rules.append({
            "id": rule,
            "name": "".join(part.capitalize() for part in rule.split("-")),
            "shortDescription": {"text": summary},
            "help": {"text": f"tenantmig lint --explain {rule} (docs/rules/{rule}.md)"},
            "defaultConfiguration": {"level": "warning" if severity == "warning" else "error"},
        })
    results = [
        {
            "ruleId": f.rule,
            "ruleIndex": index[f.rule],
            "level": _level(f),
            "message": {"text": f.message},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": {"uri": relative(f.path, root),
                                         "uriBaseId": "%SRCROOT%"},
                    "region": {"startLine": max(1, f.line)},
                },
            }],
        }
        for f in findings
    ]
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [{
            "tool": {"driver": {
                "name": "tenantmig",
                "version": version,
                "rules": driver_rules,
            }},
            "originalUriBaseIds": {
                "%SRCROOT%": {"uri": (root or Path(os.getcwd())).resolve().as_uri() + "/"}},
            "results": results,
        }],
    }
