-- Per-user counters for profile pages, kept up to date by triggers.
CREATE TABLE user_stats (
    user_id integer PRIMARY KEY REFERENCES users (id) ON DELETE CASCADE,
    post_count integer NOT NULL DEFAULT 0 CHECK (post_count >= 0),
    comment_count integer NOT NULL DEFAULT 0 CHECK (comment_count >= 0)
);

CREATE FUNCTION user_stats_bump() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_TABLE_NAME = 'posts' THEN
        IF TG_OP = 'INSERT' THEN
            INSERT INTO user_stats (user_id, post_count) VALUES (NEW.author_id, 1)
            ON CONFLICT (user_id) DO UPDATE SET post_count = user_stats.post_count + 1;
        ELSE
            UPDATE user_stats SET post_count = post_count - 1 WHERE user_id = OLD.author_id;
        END IF;
    ELSE
        IF TG_OP = 'INSERT' THEN
            INSERT INTO user_stats (user_id, comment_count) VALUES (NEW.author_id, 1)
            ON CONFLICT (user_id) DO UPDATE SET comment_count = user_stats.comment_count + 1;
        ELSE
            UPDATE user_stats SET comment_count = comment_count - 1
             WHERE user_id = OLD.author_id;
        END IF;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER posts_user_stats
AFTER INSERT OR DELETE ON posts
FOR EACH ROW EXECUTE FUNCTION user_stats_bump();

CREATE TRIGGER comments_user_stats
AFTER INSERT OR DELETE ON comments
FOR EACH ROW EXECUTE FUNCTION user_stats_bump();
