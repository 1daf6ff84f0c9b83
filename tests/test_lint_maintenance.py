"""Lint rules of the maintenance family: REINDEX, CLUSTER, VACUUM FULL, DETACH PARTITION and
TRUNCATE."""

from __future__ import annotations

import pytest
from lint_support import lint, rules

from tenantmig.lint import blocking

NEW_TABLE = "CREATE TABLE {{schema}}.imports (id bigint PRIMARY KEY, line text);\n"


@pytest.mark.parametrize(
    "sql",
    [
        "REINDEX INDEX {{schema}}.invoices_pkey;",
        "REINDEX TABLE {{schema}}.invoices;",
        "REINDEX SCHEMA {{schema}};",
        "REINDEX (VERBOSE) TABLE {{schema}}.invoices;",
    ],
)
def test_reindex_without_concurrently(sql: str) -> None:
    findings = lint(sql)
    assert [f.rule for f in findings] == ["reindex-not-concurrent"]
    assert "REINDEX (CONCURRENTLY)" in findings[0].message
    assert "PostgreSQL 12+" in findings[0].message


def test_reindex_concurrently_and_of_what_the_migration_created() -> None:
    assert rules("REINDEX TABLE CONCURRENTLY {{schema}}.invoices;", transactional=False) == []
    assert rules("REINDEX (CONCURRENTLY) INDEX {{schema}}.i;", transactional=False) == []
    assert rules(NEW_TABLE + "REINDEX TABLE {{schema}}.imports;") == []
    sql = NEW_TABLE + "CREATE INDEX imports_line_idx ON {{schema}}.imports (line);\n"
    assert rules(sql + "REINDEX INDEX imports_line_idx;") == ["unqualified-name"]
    # the schema is said as {{schema}}, not as the sentinel the linter parses
    assert "REINDEX SCHEMA {{schema}} " in lint("REINDEX SCHEMA {{schema}};")[0].message


@pytest.mark.parametrize(
    "sql",
    [
        "CLUSTER {{schema}}.invoices USING invoices_pkey;",
        "CLUSTER {{schema}}.invoices;",
        "CLUSTER;",
        "VACUUM FULL {{schema}}.invoices;",
        "VACUUM (FULL, ANALYZE) {{schema}}.invoices;",
        "VACUUM (FULL true) {{schema}}.invoices;",
        "VACUUM FULL;",
    ],
)
def test_cluster_and_vacuum_full_rewrite(sql: str) -> None:
    findings = lint(sql, transactional=False)
    assert [f.rule for f in findings] == ["cluster-vacuum-full"]
    assert "ACCESS EXCLUSIVE" in findings[0].message and "pg_repack" in findings[0].message


@pytest.mark.parametrize(
    "sql",
    [
        "VACUUM {{schema}}.invoices;",
        "VACUUM (ANALYZE) {{schema}}.invoices;",
        "VACUUM (FULL false) {{schema}}.invoices;",
        "ANALYZE {{schema}}.invoices;",
        NEW_TABLE + "VACUUM FULL {{schema}}.imports;",
        NEW_TABLE + "CLUSTER {{schema}}.imports USING imports_pkey;",
    ],
)
def test_what_does_not_rewrite_a_table_in_use(sql: str) -> None:
    assert [r for r in rules(sql, transactional=False) if r != "not-retryable"] == []


def test_detach_partition() -> None:
    detach = "ALTER TABLE {{schema}}.events DETACH PARTITION {{schema}}.events_2020"
    findings = lint(detach + ";")
    assert [(f.rule, f.severity) for f in findings] == [
        ("detach-partition-not-concurrent", "error")
    ]
    assert "PostgreSQL 14+" in findings[0].message
    findings = lint(detach + " CONCURRENTLY;", transactional=False)
    assert [(f.rule, f.severity) for f in findings] == [("detach-partition-pending", "warning")]
    assert f"{detach} FINALIZE" in findings[0].message
    assert blocking(findings) == []
    # in a transaction it cannot start: concurrently-in-transaction says so, alone
    assert rules(detach + " CONCURRENTLY;") == ["concurrently-in-transaction"]
    assert rules(detach + " FINALIZE;", transactional=False) == []


def test_truncate_cascade() -> None:
    findings = lint("TRUNCATE {{schema}}.customers CASCADE;")
    assert [f.rule for f in findings] == ["truncate-cascade"]
    assert "TRUNCATE {{schema}}.customers CASCADE" in findings[0].message
    assert rules("TRUNCATE {{schema}}.customers RESTRICT;") == []
    assert rules(NEW_TABLE + "TRUNCATE {{schema}}.imports CASCADE;") == ["truncate-cascade"]


def test_truncate_of_an_existing_table_in_a_ddl_migration() -> None:
    sql = """
    TRUNCATE {{schema}}.invoices, {{schema}}.customers;
    ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);
    """
    findings = lint(sql)
    assert [(f.rule, f.line) for f in findings] == [("truncate-existing-table", 2)]
    assert "{{schema}}.invoices, {{schema}}.customers" in findings[0].message
    # a migration of TRUNCATEs alone is a data migration
    assert rules("TRUNCATE {{schema}}.invoices;") == []
    # a table this migration created holds nothing running code uses
    assert rules(NEW_TABLE + "TRUNCATE {{schema}}.imports;") == []
    # but one created only after the TRUNCATE existed before it
    sql = "TRUNCATE {{schema}}.invoices;\n" + NEW_TABLE
    assert rules(sql) == ["truncate-existing-table"]
