-- tenantmig:lock-timeout=5s
-- Step 3 of 3 of a NOT NULL invoices.status, a separate migration from V5:
-- add + validate + SET NOT NULL in one transaction, as commonly copied advice
-- does it, holds ACCESS EXCLUSIVE through the whole scan (see
-- docs/patterns/index.md, section "Corrections to commonly copied
-- zero-downtime advice").
-- 1. VALIDATE scans the table under SHARE UPDATE EXCLUSIVE: reads and writes
--    go on during the scan.
-- 2. SET NOT NULL needs ACCESS EXCLUSIVE but, on PG 12+, skips its own scan
--    because the now valid CHECK (status IS NOT NULL) proves there is no NULL:
--    milliseconds, waiting at most 5s for the lock.
-- 3. The CHECK is then redundant and dropped (catalog-only).
ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_status_not_null;
ALTER TABLE {{schema}}.invoices ALTER COLUMN status SET NOT NULL;
ALTER TABLE {{schema}}.invoices DROP CONSTRAINT invoices_status_not_null;
