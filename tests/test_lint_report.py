"""One run of ``tenantmig lint`` reports everything: the problems of the files that do not
load and the findings of every file that does, sorted by file and line, in every format,
with exit 2 when anything blocks; ``lint --explain`` prints a rule's page (no database)."""

from __future__ import annotations

import argparse
import json
import re
import subprocess
from pathlib import Path

import pytest
import yaml
from helpers import CLOSED_DSN, assert_no_traceback, assert_usage_error, show, tm
from rich.console import Console

from tenantmig import LoadError
from tenantmig.cli._lint import FORMATS
from tenantmig.cli._lint_explain import LOAD, explain
from tenantmig.cli._main import _parser
from tenantmig.source import load_migrations, load_migrations_partially

ROOT = Path(__file__).resolve().parent.parent

FOLDER = {
    "V1__items.sql": "CREATE TABLE {{schema}}.items (id int PRIMARY KEY, qty int);\n",
    "V2__typo.sql": "-- tenantmig:no-transactoin\n"
                    "ALTER TABLE {{schema}}.items ADD COLUMN note text;\n",
    "V9__index.sql": "SELECT 1;\nCREATE INDEX items_qty ON {{schema}}.items (qty);\n",
    "V10__drop.sql": "ALTER TABLE {{schema}}.items DROP COLUMN qty;\n",
    "U10__drop.sql": "ALTER TABLE {{schema}}.items ADD COLUMN qty int;\n",
    "V11__shared.sql": "SELECT * FROM items;\n",
    "README.sql": "-- not a migration\n",
}


def _folder(tmp_path: Path, files: dict[str, str] = FOLDER) -> Path:
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_partial_loading_gives_what_loads_and_the_problems(tmp_path: Path) -> None:
    folder = _folder(tmp_path)
    migrations, problems = load_migrations_partially(folder)
    assert [m.version for m in migrations.migrations] == [1, 9, 10, 11]
    assert sorted((Path(p.path).name, p.line) for p in problems) == [
        ("README.sql", 0), ("V2__typo.sql", 1)]
    with pytest.raises(LoadError) as raised:
        load_migrations(folder)
    assert raised.value.problems == problems
    with pytest.raises(LoadError):
        load_migrations_partially(tmp_path / "absent")


def test_text_reports_load_problems_and_findings_sorted(tmp_path: Path) -> None:
    _folder(tmp_path)
    r = tm("lint", cwd=tmp_path)
    assert r.returncode == 2, show(r)
    assert_no_traceback(r)
    assert r.stderr == "", show(r)
    lines = r.stdout.splitlines()
    located = [line.split(" ", 2)[:2] for line in lines[:-1]]
    assert located == [
        ["migrations/README.sql:0", "load:"],
        ["migrations/V2__typo.sql:1", "load:"],
        ["migrations/V9__index.sql:2", "index-not-concurrent:"],
        ["migrations/V10__drop.sql:1", "drop-column:"],
        ["migrations/V11__shared.sql:1", "unqualified-name:"],
    ], r.stdout
    assert "unknown directive tenantmig:no-transactoin" in lines[1]
    assert " — " in lines[2]  # what is dangerous — the safe pattern
    assert lines[-1] == ("4 migration(s) checked: 4 error(s), 2 load problem(s) among them, "
                         "1 warning(s), 0 accepted with tenantmig:allow.")


def test_a_load_problem_alone_blocks_and_up_still_refuses_it(tmp_path: Path) -> None:
    _folder(tmp_path, {"V1__ok.sql": "CREATE TABLE {{schema}}.t (id int);\n",
                       "V2__bad.sql": "SELECT {{tenant}};\n"})
    r = tm("lint", cwd=tmp_path)
    assert r.returncode == 2, show(r)
    assert "migrations/V2__bad.sql:1 load: unknown placeholder {{tenant}}" in r.stdout
    r = tm("up", "--dsn", CLOSED_DSN, cwd=tmp_path)
    message = assert_usage_error(r)
    assert "V2__bad.sql:1: unknown placeholder" in message


def test_every_format_carries_load_problems_and_findings(tmp_path: Path) -> None:
    _folder(tmp_path)
    expected = {"load", "index-not-concurrent", "drop-column", "unqualified-name"}

    r = tm("lint", "--format", "json", cwd=tmp_path)
    assert r.returncode == 2, show(r)
    document = json.loads(r.stdout)
    assert {f["rule"] for f in document["findings"]} == expected
    assert document["blocking"] == 4
    assert tm("lint", "--json", cwd=tmp_path).stdout == r.stdout  # --json is --format json

    r = tm("lint", "--format", "github", cwd=tmp_path)
    assert r.returncode == 2, show(r)
    lines = r.stdout.splitlines()
    assert len(lines) == 5 and all(line.startswith("::") for line in lines), r.stdout
    assert lines[1].startswith("::error file=migrations/V2__typo.sql,line=1,title=load::")
    assert lines[4].startswith("::warning file=migrations/V11__shared.sql,line=1,")

    r = tm("lint", "--format", "sarif", cwd=tmp_path)
    assert r.returncode == 2, show(r)
    (run,) = json.loads(r.stdout)["runs"]
    assert {rule["id"] for rule in run["tool"]["driver"]["rules"]} == expected
    uris = [res["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for res in run["results"]]
    assert uris[:2] == ["migrations/README.sql", "migrations/V2__typo.sql"]


@pytest.mark.parametrize("form", FORMATS)
def test_nothing_blocking_is_exit_0_in_every_format(tmp_path: Path, form: str) -> None:
    _folder(tmp_path, {
        "V1__items.sql": "CREATE TABLE {{schema}}.items (id int PRIMARY KEY, qty int);\n",
        "V2__drop.sql": "-- tenantmig:allow drop-column nothing reads qty since 2.4\n"
                        "ALTER TABLE {{schema}}.items DROP COLUMN qty;\n",
        "V3__warn.sql": "SELECT * FROM items;\n",
    })
    r = tm("lint", "--format", form, cwd=tmp_path)
    assert r.returncode == 0, show(r)
    if form == "github":
        assert "::error" not in r.stdout
        assert r.stdout.count("::notice ") == 1 and r.stdout.count("::warning ") == 1


def test_json_and_another_format_is_a_usage_error(tmp_path: Path) -> None:
    _folder(tmp_path, {"V1__a.sql": "SELECT 1;\n"})
    message = assert_usage_error(tm("lint", "--json", "--format", "sarif", cwd=tmp_path))
    assert "--json" in message


def test_the_parser_offers_exactly_the_formats_lint_renders() -> None:
    (lint,) = [a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction)]
    formats = next(a for a in lint.choices["lint"]._actions if a.dest == "format")
    assert tuple(formats.choices or ()) == FORMATS


# --- --explain -----------------------------------------------------------------------------

def test_explain_prints_the_rule_page(tmp_path: Path) -> None:
    r = tm("lint", "--explain", "drop-column", cwd=tmp_path)
    assert r.returncode == 0, show(r)
    # Rendered, not raw: headings lose their hashes, the SQL example stays.
    assert "What is dangerous" in r.stdout and "## What is dangerous" not in r.stdout
    assert "ALTER TABLE {{schema}}.invoices DROP COLUMN note;" in r.stdout
    assert "PostgreSQL versions" in r.stdout


def test_explain_without_the_docs_prints_the_summary_and_where_the_page_is(
    tmp_path: Path,
) -> None:
    out = Console(record=True, width=200)
    assert explain(out, "drop-column", docs=tmp_path / "no-docs") == 0
    text = out.export_text()
    assert text.startswith("drop-column (error): DROP COLUMN of an existing table")
    assert "docs/rules/drop-column.md" in text


def test_explain_load_says_what_a_file_must_look_like() -> None:
    out = Console(record=True, width=200)
    assert explain(out, LOAD.id, docs=ROOT / "docs") == 0
    assert "docs/migration-files.md" in out.export_text()
    assert (ROOT / "docs" / "migration-files.md").is_file()


def test_explain_of_an_unknown_id_is_exit_2_with_the_known_ids(tmp_path: Path) -> None:
    message = assert_usage_error(tm("lint", "--explain", "no-such-rule", cwd=tmp_path))
    assert "no-such-rule" in message
    assert "drop-column" in message and "index-not-concurrent" in message


# --- the CI page ---------------------------------------------------------------------------

def _ci_blocks() -> list[str]:
    text = (ROOT / "docs" / "ci.md").read_text(encoding="utf-8")
    return re.findall(r"```yaml\n(.*?)```", text, re.S)


def test_the_ci_job_is_valid_yaml_of_about_ten_lines() -> None:
    job, sarif_variant = _ci_blocks()
    workflow = yaml.safe_load(job)
    assert len(job.strip().splitlines()) <= 12
    steps = workflow["jobs"]["lint"]["steps"]
    assert "tenantmig lint --format github" in steps[-1]["run"]
    assert "--lint-after" in steps[-1]["run"]
    variant = yaml.safe_load(sarif_variant)
    assert "--format sarif" in variant["steps"][0]["run"]
    assert variant["steps"][1]["uses"].startswith("github/codeql-action/upload-sarif@")


def test_the_ci_job_finds_the_newest_version_of_the_target_branch() -> None:
    (job, _) = _ci_blocks()
    run = yaml.safe_load(job)["jobs"]["lint"]["steps"][-1]["run"]
    pipeline = re.search(r"\| (sed .*?)\)\n", run)
    assert pipeline, run
    listed = "migrations/V1__a.sql\nmigrations/U12__b.sql\nmigrations/V12__b.sql\n" \
             "migrations/V9__c.py\nmigrations/README.md\n"
    done = subprocess.run(["bash", "-c", pipeline.group(1)], input=listed, text=True,
                          capture_output=True, check=True)
    assert done.stdout == "12\n"


def test_history_accepted_by_lint_after_is_an_external_suppression(tmp_path: Path) -> None:
    _folder(tmp_path, {
        "V1__items.sql": "CREATE TABLE {{schema}}.items (id int PRIMARY KEY, qty int);\n",
        "V2__index.sql": "CREATE INDEX items_qty ON {{schema}}.items (qty);\n",
    })
    r = tm("lint", "--format", "sarif", "--lint-after", "2", cwd=tmp_path)
    assert r.returncode == 0, show(r)
    (result,) = json.loads(r.stdout)["runs"][0]["results"]
    assert result["level"] == "note"
    (suppression,) = result["suppressions"]
    assert suppression["kind"] == "external"
    assert suppression["justification"].startswith("history: version up to --lint-after 2")
