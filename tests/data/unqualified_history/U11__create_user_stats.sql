DROP TRIGGER comments_user_stats ON comments;
DROP TRIGGER posts_user_stats ON posts;
DROP FUNCTION user_stats_bump();
-- tenantmig:allow drop-table history: undoes V11, which created it
DROP TABLE user_stats;
