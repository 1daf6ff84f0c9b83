-- tenantmig:allow drop-column history: undoes V8, which only added it
ALTER TABLE users DROP COLUMN display_name;
