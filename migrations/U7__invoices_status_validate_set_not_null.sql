-- tenantmig:lock-timeout=5s
-- Undo of V7: back to the state after V6, status nullable and guarded by the
-- unvalidated CHECK. Catalog-only (NOT VALID skips the scan): brief ACCESS
-- EXCLUSIVE on invoices, waiting at most 5s.
ALTER TABLE {{schema}}.invoices ALTER COLUMN status DROP NOT NULL;
ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT invoices_status_not_null CHECK (status IS NOT NULL) NOT VALID;
