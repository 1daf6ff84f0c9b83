-- The counters drifted (deleted posts were not always counted down): recount them all.
INSERT INTO user_stats (user_id)
SELECT u.id FROM users u
WHERE NOT EXISTS (SELECT 1 FROM user_stats s WHERE s.user_id = u.id);

-- tenantmig:allow unbatched-dml history: ran in production in 2023, one row per user
UPDATE user_stats s
   SET post_count = (SELECT count(*) FROM posts p WHERE p.author_id = s.user_id),
       comment_count = (SELECT count(*) FROM comments c WHERE c.author_id = s.user_id);

REFRESH MATERIALIZED VIEW user_mview;
