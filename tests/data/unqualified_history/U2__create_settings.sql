-- tenantmig:allow drop-table history: undoes V2, which created it
DROP TABLE settings;
