-- Keys get namespaces; the audit trigger records every rename.
UPDATE settings SET key = 'site.' || key WHERE key IN ('site_name', 'theme');
UPDATE settings SET key = 'posts.per_page' WHERE key = 'posts_per_page';
UPDATE settings SET key = 'registration.open' WHERE key = 'registration_open';
DELETE FROM settings WHERE key = 'max_upload_mb';
