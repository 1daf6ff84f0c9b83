-- Case-insensitive search without lower() in every query.
-- tenantmig:allow add-column-volatile-default history: ran in production in 2021 on a small table
ALTER TABLE users ADD COLUMN search_name text GENERATED ALWAYS AS (lower(username)) STORED;
