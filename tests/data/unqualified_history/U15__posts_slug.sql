-- tenantmig:allow drop-column history: undoes V15, which only added it
ALTER TABLE posts DROP COLUMN slug;
DROP FUNCTION slugify(text);
