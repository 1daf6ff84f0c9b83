-- tenantmig:allow drop-column history: undoes V41, which only added it
ALTER TABLE users DROP COLUMN banned_at;
