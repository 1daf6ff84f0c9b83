DROP VIEW leaderboard;
DROP FUNCTION user_reputation(integer);
