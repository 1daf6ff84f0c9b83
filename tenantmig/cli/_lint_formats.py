"""Lint findings in the formats CI systems read: GitHub Actions workflow commands and
SARIF 2.1.0 (GitHub code scanning and others)."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
SRCROOT = "%SRCROOT%"
HISTORY = "history: "
"""How the reason of a finding accepted by ``--lint-after`` starts."""


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
    @property
    def allowed(self) -> str | None: ...


class Described(Protocol):
    @property
    def summary(self) -> str: ...
    @property
    def severity(self) -> str: ...


def checkout(root: Path | None = None) -> Path:
    """Where paths are relative to: *root*, else the workspace GitHub Actions checked out
    (annotations and code scanning want paths from the repository's root, whichever folder
    the job runs lint from), else the current directory."""
    return (root or Path(os.environ.get("GITHUB_WORKSPACE") or Path.cwd())).resolve()


def relative(path: str, root: Path | None = None) -> str | None:
    """*path* relative to :func:`checkout` with forward slashes, as both formats want; None
    when it lies elsewhere."""
    try:
        return Path(path).resolve().relative_to(checkout(root)).as_posix()
    except ValueError:
        return None


def _text(f: Reported) -> str:
    return f.message if f.allowed is None else f"{f.message} (allowed: {f.allowed})"


def _escape_data(text: str) -> str:
    # https://github.com/actions/toolkit/blob/main/packages/core/src/command.ts
    return text.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _escape_property(text: str) -> str:
    return _escape_data(text).replace(":", "%3A").replace(",", "%2C")


def github(findings: Sequence[Reported], root: Path | None = None) -> list[str]:
    """One ``::error`` / ``::warning`` / ``::notice`` workflow command per finding, so each
    appears on the pull request's diff at its line. Only what blocks is an error: a warning
    stays a warning, and anything accepted (``tenantmig:allow``, ``--lint-after``) is a
    notice that says why."""
    lines = []
    for f in findings:
        level = "error" if f.blocking else "notice" if f.allowed is not None else "warning"
        props = ",".join((
            f"file={_escape_property(relative(f.path, root) or Path(f.path).as_posix())}",
            f"line={max(1, f.line)}",
            f"title={_escape_property(f.rule)}",
        ))
        lines.append(f"::{level} {props}::{_escape_data(_text(f))}")
    return lines


def _level(f: Reported) -> str:
    return "error" if f.blocking else "note" if f.allowed is not None else "warning"


def _location(path: str, root: Path | None) -> dict[str, str]:
    # A URI reference: a file name may hold spaces or '#'. A file outside the checkout
    # keeps an absolute file: URI, which no base applies to.
    rel = relative(path, root)
    if rel is None:
        return {"uri": Path(path).resolve().as_uri()}
    return {"uri": quote(rel), "uriBaseId": SRCROOT}


def _suppressions(f: Reported) -> dict[str, Any]:
    """An accepted finding is a suppressed result (SARIF 3.27.23): code scanning shows it
    closed, with the reason. ``--lint-after`` accepts from outside the file."""
    if f.allowed is None:
        return {}
    kind = "external" if f.allowed.startswith(HISTORY) else "inSource"
    return {"suppressions": [{"kind": kind, "status": "accepted", "justification": f.allowed}]}


def sarif(
    findings: Sequence[Reported],
    rules: Mapping[str, Described],
    *,
    version: str,
    root: Path | None = None,
) -> dict[str, Any]:
    """A SARIF 2.1.0 log of one run: ``tool.driver.rules`` lists every rule a result names
    (with its summary and how to read its page), each result has ``ruleId``, ``ruleIndex``,
    ``level``, ``message.text`` and a physical location (the file's URI relative to the
    checkout, and the line); an accepted finding is a suppressed ``note``."""
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
            "fullDescription": {"text": summary},
            "help": {"text": f"tenantmig lint --explain {rule}"},
            "defaultConfiguration": {"level": "warning" if severity == "warning" else "error"},
        })
    results = [
        {
            "ruleId": f.rule,
            "ruleIndex": index[f.rule],
            "level": _level(f),
            "message": {"text": _text(f)},
            "locations": [{
                "physicalLocation": {
                    "artifactLocation": _location(f.path, root),
                    "region": {"startLine": max(1, f.line)},
                },
            }],
            **_suppressions(f),
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
            # SARIF 3.14.14: a base's URI is absolute and ends with a slash.
            "originalUriBaseIds": {SRCROOT: {"uri": checkout(root).as_uri().rstrip("/") + "/"}},
            "results": results,
        }],
    }
