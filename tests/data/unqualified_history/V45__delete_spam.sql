-- Remove the spam post: its comments, votes, subscriptions and reports go by cascade,
-- and the triggers count the author's and commenters' stats down and refresh user_mview.
DELETE FROM posts
WHERE author_id IN (SELECT id FROM users WHERE banned_at IS NOT NULL);
