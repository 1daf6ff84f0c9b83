INSERT INTO settings (key, value) VALUES ('max_upload_mb', '10');
UPDATE settings SET key = 'registration_open' WHERE key = 'registration.open';
UPDATE settings SET key = 'posts_per_page' WHERE key = 'posts.per_page';
UPDATE settings SET key = substr(key, 6) WHERE key IN ('site.site_name', 'site.theme');
