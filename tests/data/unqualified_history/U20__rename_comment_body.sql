-- tenantmig:allow rename-column history: undo of V20
ALTER TABLE comments RENAME COLUMN content TO body;
