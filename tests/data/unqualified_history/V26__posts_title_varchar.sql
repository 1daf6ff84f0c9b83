-- Titles are limited to 300 characters; the view that selects them is rebuilt.
DROP VIEW post_view;

-- tenantmig:allow alter-column-type history: ran in production in 2021 on a small table
ALTER TABLE posts ALTER COLUMN title TYPE varchar(300);

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
