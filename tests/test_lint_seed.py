"""The seed's zero-downtime patterns as first written, and what the linter finds in each."""

from __future__ import annotations

import textwrap

from lint_support import lint, rules, state


def test_seed_pattern_1_step_5_drops_and_renames_in_one_release() -> None:
    sql = """
    ALTER TABLE {{schema}}.customers DROP COLUMN email;
    ALTER TABLE {{schema}}.customers RENAME COLUMN email_new TO email;
    """
    assert rules(sql) == ["drop-column", "rename-column"]


def test_seed_pattern_1_widening_varchar_is_binary_coercible() -> None:
    # NOTES P1: varchar(50) -> varchar(255) needs no swap at all
    assert rules("ALTER TABLE {{schema}}.customers ALTER COLUMN email TYPE VARCHAR(255);") == []


def test_seed_pattern_2_step_3_all_in_one_migration() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT invoices_status_not_null
    CHECK (status IS NOT NULL) NOT VALID;

    ALTER TABLE {{schema}}.invoices
    VALIDATE CONSTRAINT invoices_status_not_null;

    ALTER TABLE {{schema}}.invoices
    ALTER COLUMN status SET NOT NULL;

    ALTER TABLE {{schema}}.invoices
    DROP CONSTRAINT invoices_status_not_null;
    """
    findings = lint(sql)
    assert [(f.rule, f.line) for f in findings] == [
        ("validate-same-migration", 6),
        ("set-not-null-unvalidated", 9),
    ]


def test_seed_pattern_2_split_over_two_migrations_is_clean() -> None:
    add = """
    ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT invoices_status_not_null CHECK (status IS NOT NULL) NOT VALID;
    """
    validate = """
    ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_status_not_null;
    ALTER TABLE {{schema}}.invoices ALTER COLUMN status SET NOT NULL;
    ALTER TABLE {{schema}}.invoices DROP CONSTRAINT invoices_status_not_null;
    """
    assert lint(add) == []
    assert lint(validate, earlier=state(textwrap.dedent(add))) == []


SEED_P3 = """
CREATE INDEX CONCURRENTLY idx_invoices_customer_status_date
ON {{schema}}.invoices (customer_id, status, created_at DESC)
"""


def test_seed_pattern_3_concurrently_inside_a_transaction() -> None:
    assert rules(SEED_P3) == ["concurrently-in-transaction"]


def test_seed_pattern_3_without_concurrently() -> None:
    assert rules(SEED_P3.replace(" CONCURRENTLY", "")) == ["index-not-concurrent"]


def test_seed_pattern_3_transaction_false_variant_is_not_retryable() -> None:
    assert rules(SEED_P3, transactional=False) == ["concurrently-not-retryable"]
    robust = SEED_P3.replace("CONCURRENTLY", "CONCURRENTLY IF NOT EXISTS")
    assert rules(robust, transactional=False) == []
    down = "DROP INDEX CONCURRENTLY IF EXISTS {{schema}}.idx_invoices_customer_status_date"
    assert rules(down, transactional=False) == []


def test_seed_pattern_4_like_including_all_partitioned() -> None:
    sql = """
    CREATE TABLE {{schema}}.invoices_partitioned (
      LIKE {{schema}}.invoices INCLUDING ALL
    ) PARTITION BY RANGE (created_at);
    CREATE TABLE {{schema}}.invoices_2025_01
    PARTITION OF {{schema}}.invoices_partitioned
    FOR VALUES FROM ('2025-01-01') TO ('2025-02-01');
    """
    findings = lint(sql)
    assert [(f.rule, f.severity) for f in findings] == [
        ("like-copies-defaults", "warning"),
        ("partition-like-indexes", "error"),
    ]
    assert "EXCLUDING INDEXES" in findings[1].message


def test_seed_pattern_4_step_3_renames_tables() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices RENAME TO invoices_old;
    ALTER TABLE {{schema}}.invoices_partitioned RENAME TO invoices;
    """
    assert rules(sql) == ["rename-table", "rename-table"]


def test_seed_pattern_6_search_path_and_unqualified_names() -> None:
    sql = """
    SET search_path TO tenant_acme;
    ALTER TABLE payments
    ADD COLUMN status VARCHAR(50) DEFAULT 'pending';
    CREATE INDEX idx_payments_status ON payments (status);
    SET search_path TO public;
    """
    findings = lint(sql)
    assert [(f.rule, f.line) for f in findings] == [
        ("set-search-path", 2),
        ("unqualified-name", 3),
        ("index-not-concurrent", 5),
        ("unqualified-name", 5),
        ("set-search-path", 6),
    ]


def test_seed_pattern_7_foreign_key_and_validate_in_one() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT fk_invoices_customer
    FOREIGN KEY (customer_id)
    REFERENCES {{schema}}.customers (id)
    NOT VALID;

    ALTER TABLE {{schema}}.invoices
    VALIDATE CONSTRAINT fk_invoices_customer;
    """
    findings = lint(sql)
    assert [(f.rule, f.line) for f in findings] == [("validate-same-migration", 8)]
    assert "SHARE ROW EXCLUSIVE" in findings[0].message
    # NOTES P7: validate in a later migration
    assert lint(sql.split("NOT VALID;")[0] + "NOT VALID;") == []


def test_seed_pattern_8_add_value() -> None:
    seed = """
    ALTER TYPE {{schema}}.invoice_status_enum ADD VALUE 'cancelled';
    ALTER TYPE {{schema}}.invoice_status_enum ADD VALUE 'refunded';
    """
    assert rules(seed) == ["enum-value-without-if-not-exists"] * 2
    used = """
    ALTER TYPE {{schema}}.invoice_status_enum ADD VALUE IF NOT EXISTS 'cancelled';
    ALTER TABLE {{schema}}.invoices ALTER COLUMN status SET DEFAULT 'cancelled';
    """
    assert rules(used) == ["enum-value-used-same-migration"]


def test_seed_pattern_8_enum_to_varchar_rewrites() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices
    ALTER COLUMN status TYPE VARCHAR(50);
    DROP TYPE IF EXISTS {{schema}}.invoice_status_enum;
    """
    findings = lint(sql)
    assert [(f.rule, f.severity) for f in findings] == [("alter-column-type", "error")]
    assert "invoice_status_enum" in findings[0].message
    back = (
        "ALTER TABLE {{schema}}.invoices ALTER COLUMN status TYPE "
        "{{schema}}.invoice_status_enum USING status::{{schema}}.invoice_status_enum;"
    )
    # the way back starts from the varchar(50) column (a plain cast to the new type is no
    # USING at all: the types alone decide)
    assert rules(back, earlier=state(sql)) == ["alter-column-type"]
