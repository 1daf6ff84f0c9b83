-- tenantmig:allow drop-table history: undoes V7, which created it
DROP TABLE post_tags;
-- tenantmig:allow drop-table history: undoes V7, which created it
DROP TABLE tags;
