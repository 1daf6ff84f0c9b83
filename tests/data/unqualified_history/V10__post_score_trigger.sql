-- Keep posts.score equal to the sum of its votes.
CREATE FUNCTION post_score_refresh() RETURNS trigger
LANGUAGE plpgsql
AS $$
DECLARE
    target bigint;
BEGIN
    IF TG_OP = 'DELETE' THEN
        target := OLD.post_id;
    ELSE
        target := NEW.post_id;
    END IF;
    UPDATE posts
       SET score = (SELECT coalesce(sum(v.value), 0) FROM votes v WHERE v.post_id = target)
     WHERE id = target;
    IF TG_OP = 'UPDATE' AND OLD.post_id <> NEW.post_id THEN
        UPDATE posts
           SET score = (SELECT coalesce(sum(v.value), 0) FROM votes v WHERE v.post_id = OLD.post_id)
         WHERE id = OLD.post_id;
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER votes_refresh_score
AFTER INSERT OR UPDATE OR DELETE ON votes
FOR EACH ROW EXECUTE FUNCTION post_score_refresh();
