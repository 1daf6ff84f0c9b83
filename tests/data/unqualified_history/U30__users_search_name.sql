-- tenantmig:allow drop-column history: undoes V30, which only added it
ALTER TABLE users DROP COLUMN search_name;
