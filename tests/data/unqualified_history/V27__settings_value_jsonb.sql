-- Settings hold JSON values from now on.
-- tenantmig:allow alter-column-type history: ran in production in 2021, a dozen rows
ALTER TABLE settings ALTER COLUMN value TYPE jsonb USING to_jsonb(value);
