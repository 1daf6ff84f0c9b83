-- tenantmig:no-transaction
DROP INDEX CONCURRENTLY IF EXISTS comments_post_created_idx;
