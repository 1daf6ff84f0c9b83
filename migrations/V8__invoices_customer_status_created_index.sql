-- tenantmig:no-transaction
-- Index for "a customer's invoices by status, newest first",
-- built CONCURRENTLY: SHARE UPDATE EXCLUSIVE on invoices, so reads and writes
-- go on during the build. It cannot run in a transaction (25001), hence
-- no-transaction, and it must stay the only statement here: a multi-statement
-- query string is an implicit transaction. The build also
-- waits for every older transaction in the database to finish.
-- A failed build leaves an INVALID index that still slows writes and that
-- IF NOT EXISTS would silently keep; the engine drops it before a retry.
-- The index name cannot be schema-qualified in CREATE INDEX: it always goes in
-- the table's schema. Its leading customer_id also serves the V9 foreign key.
CREATE INDEX CONCURRENTLY IF NOT EXISTS invoices_customer_status_created_idx
    ON {{schema}}.invoices (customer_id, status, created_at DESC);
