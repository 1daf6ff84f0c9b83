"""Lint rules of the constraints family: NOT VALID, VALIDATE, SET NOT NULL, unique keys."""

from __future__ import annotations

import pytest
from lint_support import lint, rules, state


def test_constraint_not_valid_covers_foreign_keys_and_inline_constraints() -> None:
    assert rules(
        """
        ALTER TABLE {{schema}}.invoices ADD CONSTRAINT invoices_customer_fk
            FOREIGN KEY (customer_id) REFERENCES {{schema}}.customers (id);
        """
    ) == ["constraint-not-valid"]
    assert rules(
        "ALTER TABLE {{schema}}.invoices "
        "ADD COLUMN payer_id bigint REFERENCES {{schema}}.customers (id);"
    ) == ["constraint-not-valid"]
    assert rules(
        "ALTER TABLE {{schema}}.invoices ADD COLUMN qty int CHECK (qty > 0);"
    ) == ["constraint-not-valid"]


def test_validate_after_access_exclusive_in_the_same_transaction() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices ADD COLUMN currency char(3);
    ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_amount_positive;
    """
    findings = lint(sql)
    assert [f.rule for f in findings] == ["validate-same-migration"]
    assert findings[0].line == 3
    assert "ACCESS EXCLUSIVE" in findings[0].message and "line 2" in findings[0].message
    # no transaction: the ALTER's lock is released before the scan starts
    # (its ADD COLUMN without IF NOT EXISTS is not retryable: a warning of its own)
    assert rules(sql, transactional=False) == ["not-retryable"]
    # a lock on another table does not matter
    assert rules(
        """
        ALTER TABLE {{schema}}.customers ADD COLUMN phone text;
        ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_amount_positive;
        """
    ) == []


def test_validate_after_a_foreign_key_locked_the_referenced_table() -> None:
    sql = """
    ALTER TABLE {{schema}}.invoices ADD CONSTRAINT invoices_customer_fk
        FOREIGN KEY (customer_id) REFERENCES {{schema}}.customers (id) NOT VALID;
    ALTER TABLE {{schema}}.customers VALIDATE CONSTRAINT customers_email_check;
    """
    findings = lint(sql)
    assert [f.rule for f in findings] == ["validate-same-migration"]
    assert "SHARE ROW EXCLUSIVE" in findings[0].message


NOT_VALID_CHECK = """
ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT invoices_note_not_null CHECK (note IS NOT NULL) NOT VALID;
"""
VALIDATE_CHECK = "ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_note_not_null;"
SET_NOT_NULL = "ALTER TABLE {{schema}}.invoices ALTER COLUMN note SET NOT NULL;"


def test_set_not_null_after_a_check_validated_earlier_is_safe() -> None:
    # the project's V5 / V7 shape: NOT VALID in one migration, VALIDATE + SET NOT NULL in a later
    earlier = state(NOT_VALID_CHECK)
    assert lint(VALIDATE_CHECK + "\n" + SET_NOT_NULL, earlier=earlier) == []
    # ... or validated by a migration of its own in between
    assert lint(SET_NOT_NULL, earlier=state(NOT_VALID_CHECK, VALIDATE_CHECK)) == []


@pytest.mark.parametrize(
    ("earlier", "sql"),
    [
        ((), SET_NOT_NULL),  # no CHECK at all
        ((NOT_VALID_CHECK,), SET_NOT_NULL),  # a CHECK never validated
        ((), NOT_VALID_CHECK + VALIDATE_CHECK + SET_NOT_NULL),  # CHECK added in this migration
        ((NOT_VALID_CHECK,), SET_NOT_NULL + VALIDATE_CHECK),  # validated after, too late
        (
            (NOT_VALID_CHECK, VALIDATE_CHECK),
            "ALTER TABLE {{schema}}.invoices ALTER COLUMN amount SET NOT NULL;",  # other column
        ),
    ],
)
def test_set_not_null_without_a_validated_check(earlier: tuple[str, ...], sql: str) -> None:
    assert "set-not-null-unvalidated" in rules(sql, earlier=state(*earlier))


def test_dropped_check_no_longer_proves_not_null() -> None:
    dropped = "ALTER TABLE {{schema}}.invoices DROP CONSTRAINT invoices_note_not_null;"
    earlier = state(NOT_VALID_CHECK, VALIDATE_CHECK, dropped)
    assert rules(SET_NOT_NULL, earlier=earlier) == ["set-not-null-unvalidated"]


def test_primary_key_without_index_and_inline_unique() -> None:
    assert rules("ALTER TABLE {{schema}}.invoices ADD PRIMARY KEY (id);") == [
        "add-unique-without-index"
    ]
    assert rules("ALTER TABLE {{schema}}.invoices ADD COLUMN ref text UNIQUE;") == [
        "add-unique-without-index"
    ]
    assert rules(
        "ALTER TABLE {{schema}}.invoices ADD CONSTRAINT invoices_pkey2 PRIMARY KEY "
        "USING INDEX invoices_id_idx;"
    ) == []


# --- SET NOT NULL on a column that is already NOT NULL (issue 14 item 8) -----------------


@pytest.mark.parametrize(
    "earlier",
    [
        # BASE created invoices.customer_id NOT NULL two migrations earlier
        (),
        ("ALTER TABLE {{schema}}.invoices ADD COLUMN ref int NOT NULL DEFAULT 0;",),
        ("ALTER TABLE {{schema}}.invoices ADD COLUMN ref int GENERATED ALWAYS AS IDENTITY;",),
        ("CREATE TABLE {{schema}}.refs (ref int, n int, PRIMARY KEY (ref, n));",),
        ("CREATE TABLE {{schema}}.refs (ref serial);",),
        ("CREATE TABLE {{schema}}.refs (ref int);",
         "ALTER TABLE {{schema}}.refs ADD CONSTRAINT refs_pkey PRIMARY KEY (ref);"),
        ("CREATE TABLE {{schema}}.refs (old int NOT NULL);",
         "ALTER TABLE {{schema}}.refs RENAME COLUMN old TO ref;"),
    ],
)
def test_set_not_null_on_a_column_already_not_null(earlier: tuple[str, ...]) -> None:
    table = "refs" if any("refs" in sql for sql in earlier) else "invoices"
    column = "ref" if earlier else "customer_id"
    sql = f"ALTER TABLE {{{{schema}}}}.{table} ALTER COLUMN {column} SET NOT NULL;"
    assert rules(sql, earlier=state(*earlier)) == []


def test_set_not_null_on_a_column_made_not_null_earlier_in_this_migration() -> None:
    assert rules(
        """
        ALTER TABLE {{schema}}.invoices ADD COLUMN ref int NOT NULL DEFAULT 0;
        ALTER TABLE {{schema}}.invoices ALTER COLUMN ref SET NOT NULL;
        """
    ) == []
    # twice in one migration: the first scans the table, the second checks nothing
    assert rules(
        """
        ALTER TABLE {{schema}}.invoices ALTER COLUMN amount SET NOT NULL;
        ALTER TABLE {{schema}}.invoices ALTER COLUMN amount SET NOT NULL;
        """
    ) == ["set-not-null-unvalidated"]


@pytest.mark.parametrize(
    "earlier",
    [
        ("ALTER TABLE {{schema}}.invoices ALTER COLUMN customer_id DROP NOT NULL;",),
        ("ALTER TABLE {{schema}}.invoices DROP COLUMN customer_id;",
         "ALTER TABLE {{schema}}.invoices ADD COLUMN customer_id bigint;"),
        ("DROP TABLE {{schema}}.invoices;",
         "CREATE TABLE {{schema}}.invoices (customer_id bigint);",
         "INSERT INTO {{schema}}.invoices VALUES (1);"),
    ],
)
def test_set_not_null_once_the_column_may_hold_null_again(earlier: tuple[str, ...]) -> None:
    sql = "ALTER TABLE {{schema}}.invoices ALTER COLUMN customer_id SET NOT NULL;"
    assert rules(sql, earlier=state(*earlier)) == ["set-not-null-unvalidated"]


# --- VALIDATE in a no-transaction migration (issue 15 item 2) -----------------------------

NOT_VALID_THEN_VALIDATE = """
ALTER TABLE {{schema}}.invoices ADD CONSTRAINT invoices_customer_fk
    FOREIGN KEY (customer_id) REFERENCES {{schema}}.customers (id) NOT VALID;
ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_customer_fk;
"""


def test_validate_after_not_valid_is_flagged_in_a_transaction() -> None:
    findings = lint(NOT_VALID_THEN_VALIDATE)
    assert [(f.rule, f.line) for f in findings] == [("validate-same-migration", 4)]
    assert "(line 2)" in findings[0].message


def test_validate_after_not_valid_is_safe_without_a_transaction() -> None:
    # each statement commits on its own: the ADD's lock is released before the scan
    found = lint("-- tenantmig:no-transaction\n" + NOT_VALID_THEN_VALIDATE,
                 transactional=False)
    # Only the retry warning of a no-transaction ADD CONSTRAINT, no validate-same-migration.
    assert [f.rule for f in found] == ["not-retryable"]
