-- tenantmig:allow alter-column-type history: undo of V14
ALTER TABLE users ALTER COLUMN email TYPE text;
DROP DOMAIN email_address;
