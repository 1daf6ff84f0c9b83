-- tenantmig:no-transaction
-- comments grew large by 2022: built without blocking writes.
CREATE INDEX CONCURRENTLY IF NOT EXISTS comments_post_created_idx
    ON comments (post_id, created_at DESC);
