-- Nobody set a display name.
-- tenantmig:allow drop-column history: ran in production in 2022, column unused
ALTER TABLE users DROP COLUMN display_name;
