-- tenantmig:allow drop-table history: undoes V1, which created it
DROP TABLE users;
