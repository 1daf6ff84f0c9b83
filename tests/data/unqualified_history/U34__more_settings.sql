DELETE FROM settings WHERE key IN ('max_upload_mb', 'theme');
UPDATE settings SET value = '"My forum"' WHERE key = 'site_name';
