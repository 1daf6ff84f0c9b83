-- Commenting twice subscribed twice. Keep the oldest subscription of each (user, post),
-- which the delete trigger counts down, then make duplicates impossible.
-- tenantmig:allow unbatched-dml history: ran in production in 2022, a few rows per tenant
DELETE FROM subscriptions a
USING subscriptions b
WHERE a.user_id = b.user_id
  AND a.post_id = b.post_id
  AND a.id > b.id;

-- tenantmig:allow index-not-concurrent history: ran in production in 2022 on a small table
CREATE UNIQUE INDEX subscriptions_user_post_key ON subscriptions (user_id, post_id);

CREATE OR REPLACE FUNCTION subscribe_commenter() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO subscriptions (user_id, post_id) VALUES (NEW.author_id, NEW.post_id)
    ON CONFLICT (user_id, post_id) DO NOTHING;
    RETURN NEW;
END;
$$;
