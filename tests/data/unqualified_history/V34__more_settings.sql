INSERT INTO settings (key, value) VALUES
    ('max_upload_mb', '10'),
    ('site_name', '"Community"'),
    ('theme', '{"dark": false, "accent": "#3366cc"}')
ON CONFLICT (key) DO UPDATE SET value = EXCLUDED.value;
