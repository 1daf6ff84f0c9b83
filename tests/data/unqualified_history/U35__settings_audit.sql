DROP TRIGGER settings_audit ON settings;
DROP FUNCTION settings_audit_write();
-- tenantmig:allow drop-table history: undoes V35, which created it
DROP TABLE settings_audit;
