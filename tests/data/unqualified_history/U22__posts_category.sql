-- tenantmig:allow drop-column history: undoes V22, which only added it
ALTER TABLE posts DROP COLUMN category_id;
