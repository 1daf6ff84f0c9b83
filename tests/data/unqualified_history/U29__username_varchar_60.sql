DROP VIEW post_view;
DROP MATERIALIZED VIEW user_mview;

-- tenantmig:allow alter-column-type history: undo of V29
ALTER TABLE users ALTER COLUMN username TYPE varchar(40);

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

CREATE MATERIALIZED VIEW user_mview AS
SELECT u.id,
       u.username,
       count(p.id) AS post_count,
       coalesce(sum(p.score), 0) AS total_score
FROM users u
LEFT JOIN posts p ON p.author_id = u.id
GROUP BY u.id, u.username;

CREATE UNIQUE INDEX user_mview_id_key ON user_mview (id);
