-- Site-wide settings, seeded with what the first release needed.
CREATE TABLE settings (
    key text PRIMARY KEY,
    value text NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now()
);

INSERT INTO settings (key, value) VALUES
    ('site_name', 'My forum'),
    ('registration_open', 'true'),
    ('posts_per_page', '25');
