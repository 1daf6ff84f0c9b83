-- tenantmig:lock-timeout=5s
-- Step 1 of 3 of a NOT NULL invoices.status, all catalog-only:
-- ACCESS EXCLUSIVE on invoices for milliseconds, waiting at most 5s.
-- The column is added without a default and the default set in a second
-- statement, unlike the commonly copied version (docs/patterns/index.md,
-- section "Corrections to commonly copied zero-downtime advice"):
-- ADD COLUMN ... DEFAULT 'draft' makes every existing row read 'draft' at once
-- (PG 11+ stores the constant, no rewrite), so a "WHERE status IS NULL"
-- backfill afterwards finds nothing and paid invoices stay 'draft'. Here
-- existing rows read NULL until V6 sets them by business logic, while new rows
-- get 'draft'.
-- The CHECK is added NOT VALID: enforced for new writes from commit on, no
-- scan of existing rows (NOT VALID exists since 9.2 and still takes ACCESS
-- EXCLUSIVE briefly; it is not "instant" and not lock-free). It is
-- validated in V7, a separate migration, so the validation scan never runs
-- under this lock.
ALTER TABLE {{schema}}.invoices ADD COLUMN status varchar(20);
ALTER TABLE {{schema}}.invoices ALTER COLUMN status SET DEFAULT 'draft';
ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT invoices_status_not_null CHECK (status IS NOT NULL) NOT VALID;
