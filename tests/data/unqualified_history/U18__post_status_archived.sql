-- An enum value cannot be dropped: rebuild the type without it (no post is archived once
-- U19 has run) and put back what depends on posts.status.
DROP VIEW post_view;
ALTER TABLE posts ALTER COLUMN status DROP DEFAULT;
CREATE TYPE post_status_old AS ENUM ('draft', 'published');
-- tenantmig:allow alter-column-type history: undo of V18, small table
ALTER TABLE posts ALTER COLUMN status TYPE post_status_old USING status::text::post_status_old;
DROP TYPE post_status;
ALTER TYPE post_status_old RENAME TO post_status;
ALTER TABLE posts ALTER COLUMN status SET DEFAULT 'draft';

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
