-- tenantmig:lock-timeout=5s
-- Step 1 of 3 of the column-swap route for customers.email.
-- Why the route at all: a widening alone does not need it, whatever commonly
-- copied advice says (docs/patterns/index.md, section
-- "Corrections to commonly copied zero-downtime advice"). A plain
-- varchar(50) -> varchar(255) increase is binary-coercible: ALTER COLUMN ...
-- TYPE varchar(255) with a lock timeout would do, with no rewrite and no index
-- rebuild. The swap earns its place because the new column also holds the
-- email normalised, lower(btrim(email)), which an in-place ALTER TYPE cannot do
-- without rewriting the table under ACCESS EXCLUSIVE.
-- This migration adds the nullable email_new (catalog-only, no rewrite) and a
-- BEFORE INSERT OR UPDATE OF email trigger that fills it for every write from
-- now on; the trigger replaces an application dual-write, so no
-- release of the app is needed. Both statements commit together, so there is
-- no window where a write escapes both the trigger and the V3 backfill.
-- Locks: ACCESS EXCLUSIVE on customers for a catalog change only, waiting at
-- most 5s (then the engine retries).
ALTER TABLE {{schema}}.customers ADD COLUMN email_new varchar(255);

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
