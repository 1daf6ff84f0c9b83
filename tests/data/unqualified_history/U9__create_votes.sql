-- tenantmig:allow drop-table history: undoes V9, which created it
DROP TABLE votes;
