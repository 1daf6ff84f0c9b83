DELETE FROM post_tags;
DELETE FROM votes;
DELETE FROM subscriptions;
DELETE FROM comments;
DELETE FROM posts;
DELETE FROM user_stats;
DELETE FROM users
WHERE username IN ('system', 'alice', 'bob', 'spammer');
