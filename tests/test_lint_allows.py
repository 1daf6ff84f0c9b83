"""Allow comments cover the statement they stand above or inside, never the next one; every
finding is reported at its statement's first line (where an allow comment stands)."""

from __future__ import annotations

from lint_support import lint

from tenantmig.lint import blocking


def test_allow_inside_a_statement_never_accepts_the_next_one() -> None:
    # the case of the issue: the allow stands inside the first ALTER TABLE
    findings = lint(
        """\
        ALTER TABLE {{schema}}.invoices
        -- tenantmig:allow drop-column nobody reads note since 2.4
        DROP COLUMN note;
        ALTER TABLE {{schema}}.customers DROP COLUMN email;
        """
    )
    assert [(f.line, f.rule, f.allowed) for f in findings] == [
        (1, "drop-column", "nobody reads note since 2.4"),
        (4, "drop-column", None),
    ]
    assert "invoices" in findings[0].message and "customers" in findings[1].message
    assert blocking(findings) == [findings[1]]


def test_allow_above_a_statement() -> None:
    findings = lint(
        """\
        ALTER TABLE {{schema}}.invoices DROP COLUMN amount;
        -- tenantmig:allow drop-column nobody reads note since 2.4
        ALTER TABLE {{schema}}.invoices
            DROP COLUMN note;
        """
    )
    assert [(f.line, f.allowed) for f in findings] == [
        (1, None),
        (3, "nobody reads note since 2.4"),
    ]


def test_allow_deep_inside_a_multi_line_statement() -> None:
    findings = lint(
        """\
        ALTER TABLE {{schema}}.invoices
            ADD COLUMN x int,
            -- tenantmig:allow drop-column both columns are dead since 2.4
            DROP COLUMN note,
            DROP COLUMN amount;
        ALTER TABLE {{schema}}.customers DROP COLUMN email;
        """
    )
    assert [(f.line, f.allowed) for f in findings] == [
        (1, "both columns are dead since 2.4"),
        (1, "both columns are dead since 2.4"),
        (6, None),
    ]


def test_allow_in_the_header_covers_the_whole_file() -> None:
    findings = lint(
        """\
        -- tenantmig:allow drop-column both columns are dead since 2.4
        ALTER TABLE {{schema}}.invoices DROP COLUMN note;

        ALTER TABLE {{schema}}.customers
            DROP COLUMN email;
        """
    )
    assert [(f.line, f.allowed) for f in findings] == [(2, "both columns are dead since 2.4"),
                                                       (4, "both columns are dead since 2.4")]
    assert blocking(findings) == []


def test_allow_between_two_statements_covers_the_one_below() -> None:
    findings = lint(
        """\
        ALTER TABLE {{schema}}.invoices DROP COLUMN note; SELECT 1;
        -- tenantmig:allow drop-column nobody reads amount
        ALTER TABLE {{schema}}.invoices DROP COLUMN amount; ALTER TABLE {{schema}}.customers
            DROP COLUMN email;
        """
    )
    # two statements start on line 3: the allow covers the first of them only
    assert [(f.line, f.allowed) for f in findings] == [
        (1, None),
        (3, "nobody reads amount"),
        (3, None),
    ]
    assert "amount" in findings[1].message and "email" in findings[2].message


def test_unused_allow_is_still_reported() -> None:
    findings = lint(
        """\
        ALTER TABLE {{schema}}.invoices
            -- tenantmig:allow rename-column not this statement's rule
            DROP COLUMN note;
        ALTER TABLE {{schema}}.invoices RENAME COLUMN amount TO total;
        -- tenantmig:allow drop-table nothing follows
        """
    )
    assert [(f.line, f.rule, f.allowed) for f in findings] == [
        (1, "drop-column", None),
        (2, "unused-allow", None),
        (4, "rename-column", None),
        (5, "unused-allow", None),
    ]
    assert "stands above or inside" in findings[1].message


def test_every_finding_is_at_its_statements_first_line() -> None:
    findings = lint(
        """\
        ALTER TABLE {{schema}}.customers
            ADD CONSTRAINT customers_email_key
            UNIQUE (email);
        ALTER TABLE {{schema}}.invoices
            ADD CONSTRAINT invoices_customer_fk FOREIGN KEY (customer_id)
            REFERENCES customers (id);
        ALTER TABLE {{schema}}.invoices
            ADD COLUMN qty int
            CHECK (qty > 0);
        """
    )
    assert sorted((f.line, f.rule) for f in findings) == [
        (1, "add-unique-without-index"),
        (4, "constraint-not-valid"),
        (4, "unqualified-name"),
        (7, "constraint-not-valid"),
    ]


def test_an_allow_on_the_first_line_of_a_clause_accepts_it() -> None:
    # add-unique-without-index used to be reported at the clause's line: an allow above the
    # statement (where the finding now is) accepts it
    findings = lint(
        """\
        -- tenantmig:lock-timeout=2s
        SELECT 1;
        -- tenantmig:allow add-unique-without-index customers holds 12 rows in every tenant
        ALTER TABLE {{schema}}.customers
            ADD CONSTRAINT customers_email_key UNIQUE (email);
        """
    )
    assert [(f.line, f.allowed) for f in findings] == [
        (4, "customers holds 12 rows in every tenant")
    ]
