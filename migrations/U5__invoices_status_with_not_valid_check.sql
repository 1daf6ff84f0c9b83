-- tenantmig:lock-timeout=5s
-- tenantmig:allow drop-column undo of V5: runs only with a release of the app that predates invoices.status
-- Undo of V5: drops the CHECK and the status column (and its values).
-- Catalog-only, DROP COLUMN does not rewrite; brief ACCESS EXCLUSIVE on
-- invoices, waiting at most 5s. Runs after U8, so no index uses the column.
ALTER TABLE {{schema}}.invoices DROP CONSTRAINT invoices_status_not_null;
ALTER TABLE {{schema}}.invoices DROP COLUMN status;
