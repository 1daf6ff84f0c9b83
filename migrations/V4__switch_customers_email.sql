-- tenantmig:lock-timeout=5s
-- tenantmig:allow rename-column the application reads and writes the new name (email) from this release on; email_old is kept for rollback
-- Step 3 of 3 of the customers.email swap: switch in one short transaction.
-- Drops the sync trigger and its function, then renames email -> email_old and
-- email_new -> email, so from commit on the application reads and writes the
-- normalised varchar(255) column under the old name. All catalog-only: ACCESS
-- EXCLUSIVE on customers for milliseconds, waiting at most 5s for the lock
-- (then the engine retries). V3 checked that every row was backfilled.
-- email_old is kept (nullable, no longer maintained) so this release can be
-- rolled back; dropping it belongs to a later release, not to this one.
DROP TRIGGER customers_email_sync ON {{schema}}.customers;
DROP FUNCTION {{schema}}.customers_email_sync();
ALTER TABLE {{schema}}.customers RENAME COLUMN email TO email_old;
ALTER TABLE {{schema}}.customers RENAME COLUMN email_new TO email;
