-- tenantmig:allow drop-table history: undoes V21, which created it
DROP TABLE categories;
