-- Reputation is the sum of a user's post scores; the leaderboard view calls it.
CREATE FUNCTION user_reputation(target_user integer) RETURNS bigint
LANGUAGE plpgsql STABLE
AS $$
DECLARE
    total bigint;
BEGIN
    SELECT coalesce(sum(p.score), 0) INTO total FROM posts p WHERE p.author_id = target_user;
    RETURN total;
END;
$$;

CREATE VIEW leaderboard AS
SELECT u.id, u.username, user_reputation(u.id) AS reputation
FROM users u
WHERE u.banned_at IS NULL;
