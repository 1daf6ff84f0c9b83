-- Whoever comments on a post is subscribed to it; posts count their subscribers.
CREATE TABLE subscriptions (
    id serial PRIMARY KEY,
    user_id integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE posts ADD COLUMN subscriber_count integer NOT NULL DEFAULT 0;

CREATE FUNCTION subscribe_commenter() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    INSERT INTO subscriptions (user_id, post_id) VALUES (NEW.author_id, NEW.post_id);
    RETURN NEW;
END;
$$;

CREATE FUNCTION subscriber_count_refresh() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        UPDATE posts SET subscriber_count = subscriber_count + 1 WHERE id = NEW.post_id;
    ELSE
        UPDATE posts SET subscriber_count = subscriber_count - 1 WHERE id = OLD.post_id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER comments_subscribe
AFTER INSERT ON comments
FOR EACH ROW EXECUTE FUNCTION subscribe_commenter();

CREATE TRIGGER subscriptions_count
AFTER INSERT OR DELETE ON subscriptions
FOR EACH ROW EXECUTE FUNCTION subscriber_count_refresh();
