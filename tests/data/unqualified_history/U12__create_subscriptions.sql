DROP TRIGGER comments_subscribe ON comments;
-- tenantmig:allow drop-table history: undoes V12, which created it
DROP TABLE subscriptions;
DROP FUNCTION subscriber_count_refresh();
DROP FUNCTION subscribe_commenter();
-- tenantmig:allow drop-column history: undoes V12, which only added it
ALTER TABLE posts DROP COLUMN subscriber_count;
