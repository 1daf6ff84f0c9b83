-- tenantmig:allow alter-column-type history: undo of V27, a dozen rows
ALTER TABLE settings ALTER COLUMN value TYPE text USING value #>> '{}';
