DROP VIEW post_view;

ALTER TABLE posts ALTER COLUMN title TYPE text;

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
