-- Ranking for the front page, and the view the application lists posts from.
CREATE FUNCTION hot_rank(score integer, created timestamptz)
RETURNS double precision
LANGUAGE sql IMMUTABLE
AS $$
    SELECT round(
        (log(greatest(abs(score), 1)::numeric) * sign(score)
         + extract(epoch FROM created) / 45000)::numeric, 6
    )::double precision
$$;

CREATE VIEW post_view AS
SELECT p.id,
       p.author_id,
       u.username AS author,
       p.title,
       p.body,
       p.status,
       p.score,
       p.created_at,
       hot_rank(p.score, p.created_at) AS rank
FROM posts p
JOIN users u ON u.id = p.author_id;
