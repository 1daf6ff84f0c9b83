-- tenantmig:allow drop-table history: undoes V5, which created it
DROP TABLE comments;
