-- tenantmig:lock-timeout=5s
-- Foreign key invoices.customer_id -> customers(id), step 1 of 2 (seed
-- pattern 7). Added NOT VALID: enforced for new writes from commit on, existing
-- rows not scanned. ADD FOREIGN KEY takes SHARE ROW EXCLUSIVE on both tables
-- until commit (NOTES-ON-SEED, P7), which blocks writes, so this migration
-- does nothing else: the lock lasts milliseconds, waiting at most 5s. The
-- validation is V10, a later migration (the seed validated in the same
-- transaction, blocking writes to both tables during the scan).
ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT invoices_customer_id_fkey
    FOREIGN KEY (customer_id) REFERENCES {{schema}}.customers (id)
    NOT VALID;
