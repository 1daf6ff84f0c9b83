-- The duplicates deleted by V31 are not brought back.
CREATE OR REPLACE FUNCTION subscribe_commenter() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO subscriptions (user_id, post_id) VALUES (NEW.author_id, NEW.post_id);
    RETURN NEW;
END;
$$;

-- tenantmig:allow drop-index-not-concurrent history: undo of V31, small table
DROP INDEX subscriptions_user_post_key;
