-- tenantmig:allow drop-column history: undoes V39, which only added it
ALTER TABLE post_labels DROP COLUMN id;
