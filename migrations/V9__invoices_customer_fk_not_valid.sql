-- tenantmig:lock-timeout=5s
-- Foreign key invoices.customer_id -> customers(id), step 1 of 2. Added NOT
-- VALID: enforced for new writes from commit on, existing rows not scanned.
-- ADD FOREIGN KEY takes SHARE ROW EXCLUSIVE on both tables until commit, which
-- blocks writes, so this migration does nothing else: the lock lasts
-- milliseconds, waiting at most 5s. The validation is V10, a later migration:
-- validating in the same transaction, as commonly copied advice does, blocks
-- writes to both tables during the scan (see docs/patterns/index.md, section
-- "Corrections to commonly copied zero-downtime advice").
ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT invoices_customer_id_fkey
    FOREIGN KEY (customer_id) REFERENCES {{schema}}.customers (id)
    NOT VALID;
