ALTER TABLE users ADD COLUMN display_name text;
COMMENT ON COLUMN users.display_name IS 'Shown instead of the username when set';
