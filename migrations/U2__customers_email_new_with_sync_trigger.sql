-- tenantmig:lock-timeout=5s
-- tenantmig:allow drop-column undo of V2: once U4 has run, email_new is only the trigger's copy and no release of the app reads it
-- Undo of V2: removes the sync trigger, its function and the email_new column.
-- Catalog-only (DROP COLUMN does not rewrite); brief ACCESS EXCLUSIVE on
-- customers, waiting at most 5s. The original email column is untouched.
DROP TRIGGER customers_email_sync ON {{schema}}.customers;
DROP FUNCTION {{schema}}.customers_email_sync();
ALTER TABLE {{schema}}.customers DROP COLUMN email_new;
