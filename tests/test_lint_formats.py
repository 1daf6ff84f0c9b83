"""The CI formats of ``tenantmig lint`` checked against the formats' own rules (no database).

GitHub Actions workflow commands: ``::LEVEL file=F,line=N,title=T::MESSAGE``, one per line,
LEVEL one of error/warning/notice; in properties ``%``, ``\\r``, ``\\n``, ``:`` and ``,`` are
escaped as ``%25 %0D %0A %3A %2C``, in the message the first three (the toolkit's
``command.ts``). SARIF 2.1.0 as GitHub code scanning reads it: ``version`` and ``$schema``,
``runs[].tool.driver`` with a name and every rule a result names, each result with ``ruleId``
(and a ``ruleIndex`` pointing at it), a ``level`` of the spec's four, ``message.text``, and a
physical location whose ``artifactLocation.uri`` is a URI reference relative to the checkout
(based on a ``uriBaseId`` the run defines as an absolute URI ending in ``/``) and a
``region.startLine`` of at least 1.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest

from tenantmig.cli._lint_explain import KNOWN
from tenantmig.cli._lint_formats import github, sarif
from tenantmig.lint import Finding

_COMMAND = re.compile(
    r"^::(?P<level>error|warning|notice) "
    r"file=(?P<file>[^,:\r\n]*),line=(?P<line>[1-9]\d*),title=(?P<title>[^,:\r\n]*)"
    r"::(?P<message>[^\r\n]*)$")


def _unescape(text: str) -> str:
    for code, char in (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%")):
        text = text.replace(code, char)
    return text


@pytest.fixture
def root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("GITHUB_WORKSPACE", raising=False)
    (tmp_path / "migrations").mkdir()
    return tmp_path


def _findings(root: Path) -> list[Finding]:
    folder = root / "migrations"
    return [
        Finding(str(folder / "V1__a.sql"), 3, "index-not-concurrent", "blocks writes — use "
                "CONCURRENTLY", "error"),
        Finding(str(folder / "V2__b.sql"), 1, "unqualified-name", "table t: qualify it",
                "warning"),
        Finding(str(folder / "V3__c.sql"), 2, "drop-column", "drops x", "error",
                allowed="nobody reads x: 100%, checked"),
        Finding(str(folder / "V4__d.sql"), 5, "rename-column", "renames", "warning",
                allowed="history: version up to --lint-after 4"),
        Finding(str(folder / "V5__e.sql"), 0, "load", "bad file name", "error"),
    ]


# --- GitHub workflow commands --------------------------------------------------------------

def test_github_is_one_command_per_finding_with_the_right_level(root: Path) -> None:
    lines = github(_findings(root), root)
    assert len(lines) == 5
    parsed = [_COMMAND.match(line) for line in lines]
    assert all(parsed), lines
    levels = [m["level"] for m in parsed if m]
    # Only what blocks is an error: a warning is a warning, an accepted finding a notice.
    assert levels == ["error", "warning", "notice", "notice", "error"]
    first = parsed[0]
    assert first is not None
    assert (first["file"], first["line"], first["title"]) == (
        "migrations/V1__a.sql", "3", "index-not-concurrent")
    assert _unescape(first["message"]) == "blocks writes — use CONCURRENTLY"


def test_github_says_why_an_accepted_finding_is_accepted(root: Path) -> None:
    notice = github(_findings(root), root)[2]
    assert notice.endswith("drops x (allowed: nobody reads x: 100%25, checked)")


def test_github_line_zero_is_the_first_line(root: Path) -> None:
    assert ",line=1," in github(_findings(root), root)[4]


def test_github_escapes_properties_and_message(root: Path) -> None:
    odd = root / "migrations" / "V1__a:b,c%d.sql"
    finding = Finding(str(odd), 7, "rule,x:y", "one%\r\ntwo: three, four", "error")
    (line,) = github([finding], root)
    assert "\n" not in line and "\r" not in line
    match = _COMMAND.match(line)
    assert match, line
    assert match["file"] == "migrations/V1__a%3Ab%2Cc%25d.sql"
    assert _unescape(match["file"]) == "migrations/V1__a:b,c%d.sql"
    assert match["title"] == "rule%2Cx%3Ay"
    # The message is the last field: colons and commas pass there as they are.
    assert match["message"] == "one%25%0D%0Atwo: three, four"
    assert _unescape(match["message"]) == finding.message


def test_github_paths_are_relative_to_the_workspace(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A job that runs lint in a subfolder still annotates the repository's own paths.
    monkeypatch.setenv("GITHUB_WORKSPACE", str(root))
    monkeypatch.chdir(root / "migrations")
    (line, *_) = github(_findings(root))
    assert line.startswith("::error file=migrations/V1__a.sql,line=3,")


# --- SARIF 2.1.0 ---------------------------------------------------------------------------

def _log(root: Path, findings: list[Finding] | None = None) -> dict[str, Any]:
    log = sarif(_findings(root) if findings is None else findings, KNOWN, version="9.9",
                root=root)
    # What is written is JSON: it must survive a round trip unchanged.
    result: dict[str, Any] = json.loads(json.dumps(log))
    assert result == log
    return result


def test_sarif_top_level(root: Path) -> None:
    log = _log(root)
    assert log["version"] == "2.1.0"
    assert log["$schema"].startswith("https://") and "sarif-2.1.0" in log["$schema"]
    (run,) = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "tenantmig" and driver["version"] == "9.9"


def test_sarif_lists_every_rule_used_and_results_point_at_them(root: Path) -> None:
    (run,) = _log(root)["runs"]
    rules = run["tool"]["driver"]["rules"]
    ids = [r["id"] for r in rules]
    assert len(ids) == len(set(ids))
    assert set(ids) == {f.rule for f in _findings(root)}
    for rule in rules:
        assert rule["shortDescription"]["text"] == KNOWN[rule["id"]].summary
        assert rule["fullDescription"]["text"] and rule["help"]["text"]
        assert rule["defaultConfiguration"]["level"] == KNOWN[rule["id"]].severity
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]


def test_sarif_results(root: Path) -> None:
    (run,) = _log(root)["runs"]
    results = run["results"]
    assert len(results) == len(_findings(root))
    assert [r["level"] for r in results] == ["error", "warning", "note", "note", "error"]
    assert all(r["level"] in ("none", "note", "warning", "error") for r in results)
    assert results[0]["message"]["text"] == "blocks writes — use CONCURRENTLY"
    base = run["originalUriBaseIds"]
    for result, finding in zip(results, _findings(root), strict=True):
        (location,) = result["locations"]
        physical = location["physicalLocation"]
        artifact = physical["artifactLocation"]
        uri = artifact["uri"]
        assert urlsplit(uri).scheme == "" and not uri.startswith("/"), uri
        assert artifact["uriBaseId"] in base
        assert physical["region"]["startLine"] == max(1, finding.line)
        assert root / unquote(uri) == Path(finding.path)
    (srcroot,) = base.values()
    assert srcroot["uri"] == root.resolve().as_uri() + "/"


def test_sarif_accepted_findings_are_suppressed_with_their_reason(root: Path) -> None:
    (run,) = _log(root)["runs"]
    results = run["results"]
    assert "suppressions" not in results[0] and "suppressions" not in results[1]
    assert results[2]["suppressions"] == [{
        "kind": "inSource", "status": "accepted", "justification": "nobody reads x: 100%, checked",
    }]
    assert results[3]["suppressions"][0]["kind"] == "external"


def test_sarif_uri_is_a_uri_reference(root: Path) -> None:
    odd = root / "migrations" / "V1__add user #2.sql"
    (result,) = _log(root, [Finding(str(odd), 1, "drop-table", "x", "error")])["runs"][0][
        "results"]
    uri = result["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    assert uri == "migrations/V1__add%20user%20%232.sql"


def test_sarif_file_outside_the_checkout_has_an_absolute_uri(root: Path, tmp_path: Path) -> None:
    elsewhere = tmp_path.parent / "elsewhere.sql"
    (result,) = _log(root / "migrations", [Finding(str(elsewhere), 1, "drop-table", "x",
                                                   "error")])["runs"][0]["results"]
    artifact = result["locations"][0]["physicalLocation"]["artifactLocation"]
    assert artifact == {"uri": elsewhere.resolve().as_uri()}


def test_sarif_of_nothing_is_a_valid_empty_run(root: Path) -> None:
    (run,) = _log(root, [])["runs"]
    assert run["results"] == [] and run["tool"]["driver"]["rules"] == []
