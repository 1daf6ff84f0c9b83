-- tenantmig:lock-timeout=5s
-- tenantmig:allow rename-column undo of V4: runs only with the previous release of the app, which reads the old names
-- Undo of V4: renames the columns back and restores the sync trigger, in one
-- short transaction (catalog-only, ACCESS EXCLUSIVE on customers for
-- milliseconds, waiting at most 5s). No data moves: emails written after the
-- switch stay in email_new (the old email column was not maintained meanwhile
-- and may be stale for those rows). Undoing further, U2 drops email_new.
ALTER TABLE {{schema}}.customers RENAME COLUMN email TO email_new;
ALTER TABLE {{schema}}.customers RENAME COLUMN email_old TO email;

CREATE FUNCTION {{schema}}.customers_email_sync() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.email_new := lower(btrim(NEW.email));
    RETURN NEW;
END
$$;

CREATE TRIGGER customers_email_sync
    BEFORE INSERT OR UPDATE OF email ON {{schema}}.customers
    FOR EACH ROW EXECUTE FUNCTION {{schema}}.customers_email_sync();
