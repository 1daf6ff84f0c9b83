-- tenantmig:allow drop-index-not-concurrent history: undo of V16, small tables
DROP INDEX comments_author_id_idx;
-- tenantmig:allow drop-index-not-concurrent history: undo of V16, small tables
DROP INDEX users_lower_username_key;
-- tenantmig:allow drop-index-not-concurrent history: undo of V16, small tables
DROP INDEX posts_slug_key;
