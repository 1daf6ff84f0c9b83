-- The user directory reads a materialized view, refreshed whenever posts come and go.
CREATE MATERIALIZED VIEW user_mview AS
SELECT u.id,
       u.username,
       count(p.id) AS post_count,
       coalesce(sum(p.score), 0) AS total_score
FROM users u
LEFT JOIN posts p ON p.author_id = u.id
GROUP BY u.id, u.username;

CREATE UNIQUE INDEX user_mview_id_key ON user_mview (id);

CREATE FUNCTION refresh_user_mview() RETURNS trigger
LANGUAGE plpgsql
AS $$
BEGIN
    REFRESH MATERIALIZED VIEW user_mview;
    RETURN NULL;
END;
$$;

CREATE TRIGGER posts_refresh_user_mview
AFTER INSERT OR DELETE ON posts
FOR EACH STATEMENT EXECUTE FUNCTION refresh_user_mview();
