ALTER TABLE users ADD COLUMN banned_at timestamptz;
-- tenantmig:allow index-not-concurrent history: ran in production in 2023 on a small table
CREATE INDEX users_active_created_idx ON users (created_at) WHERE banned_at IS NULL;
-- tenantmig:allow unbatched-dml history: ran in production in 2023, one row per tenant
UPDATE users SET banned_at = '2019-06-02 00:00:00+00' WHERE username = 'spammer';
