-- tenantmig:no-transaction
-- Undo of V8: DROP INDEX CONCURRENTLY waits out queries using the index
-- instead of taking ACCESS EXCLUSIVE on invoices; like the build it cannot run
-- in a transaction and stays the only statement. IF EXISTS makes a retry safe.
DROP INDEX CONCURRENTLY IF EXISTS {{schema}}.invoices_customer_status_created_idx;
