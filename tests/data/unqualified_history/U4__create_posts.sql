-- tenantmig:allow drop-table history: undoes V4, which created it
DROP TABLE posts;
