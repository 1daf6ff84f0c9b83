"""``tenantmig lint --fix``: qualifiers added conservatively."""

from __future__ import annotations

from tenantmig.lint import fix_qualifiers, lint_sql

FIX_BEFORE = """\
-- payments: a comment naming payments stays as it is
CREATE TABLE payments (id bigint PRIMARY KEY, mood mood, customer_id bigint
    REFERENCES customers (id), created timestamptz DEFAULT now());
CREATE TYPE mood AS ENUM ('payments', 'customers');
ALTER TABLE ONLY payments ADD COLUMN note text;
CREATE INDEX CONCURRENTLY payments_customer_idx ON payments (customer_id);
DROP INDEX CONCURRENTLY IF EXISTS payments_customer_idx, {{schema}}.other_idx;
DROP TABLE old_payments, "Old Payments" CASCADE;
CREATE FUNCTION touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE payments SET note = 'customers'; RETURN NEW; END $$;
CREATE TRIGGER payments_touch BEFORE UPDATE ON payments
    FOR EACH ROW EXECUTE FUNCTION touch();
DROP TRIGGER payments_touch ON payments;
DROP FUNCTION touch();
INSERT INTO payments (id) SELECT id FROM customers JOIN orders USING (id);
WITH recent AS (SELECT 1) DELETE FROM payments USING recent;
ALTER TYPE mood ADD VALUE IF NOT EXISTS 'ok';
SELECT 'payments'::text, E'customers', pg_catalog.lower('x') FROM public.plans;
"""

FIX_AFTER = """\
-- payments: a comment naming payments stays as it is
CREATE TABLE {{schema}}.payments (id bigint PRIMARY KEY, mood {{schema}}.mood, customer_id bigint
    REFERENCES {{schema}}.customers (id), created timestamptz DEFAULT now());
CREATE TYPE {{schema}}.mood AS ENUM ('payments', 'customers');
ALTER TABLE ONLY {{schema}}.payments ADD COLUMN note text;
CREATE INDEX CONCURRENTLY payments_customer_idx ON {{schema}}.payments (customer_id);
DROP INDEX CONCURRENTLY IF EXISTS {{schema}}.payments_customer_idx, {{schema}}.other_idx;
DROP TABLE {{schema}}.old_payments, {{schema}}."Old Payments" CASCADE;
CREATE FUNCTION {{schema}}.touch() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN UPDATE payments SET note = 'customers'; RETURN NEW; END $$;
CREATE TRIGGER payments_touch BEFORE UPDATE ON {{schema}}.payments
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.touch();
DROP TRIGGER payments_touch ON {{schema}}.payments;
DROP FUNCTION {{schema}}.touch();
INSERT INTO {{schema}}.payments (id) SELECT id FROM {{schema}}.customers JOIN {{schema}}.orders USING (id);
WITH recent AS (SELECT 1) DELETE FROM {{schema}}.payments USING recent;
ALTER TYPE {{schema}}.mood ADD VALUE IF NOT EXISTS 'ok';
SELECT 'payments'::text, E'customers', pg_catalog.lower('x') FROM public.plans;
"""  # noqa: E501


def test_fix_qualifiers() -> None:
    assert fix_qualifiers(FIX_BEFORE) == FIX_AFTER


def test_fix_qualifiers_is_idempotent_and_leaves_nothing_unqualified() -> None:
    assert fix_qualifiers(FIX_AFTER) == FIX_AFTER
    findings = lint_sql(FIX_AFTER, transactional=False, shared_schemas=["public"])
    assert [f for f in findings if f.rule == "unqualified-name"] == []


def test_fix_qualifiers_leaves_unparsable_text_alone() -> None:
    text = "CREATE TABLE payments (id int);\nALTER TABEL payments ADD x int;\n"
    assert fix_qualifiers(text) == text


def test_fix_qualifiers_keeps_crlf_and_other_schemas() -> None:
    text = "ALTER TABLE payments ADD x int;\r\nSELECT * FROM tenant_acme.t, shared.plans;\r\n"
    assert fix_qualifiers(text) == (
        "ALTER TABLE {{schema}}.payments ADD x int;\r\n"
        "SELECT * FROM tenant_acme.t, shared.plans;\r\n"
    )
