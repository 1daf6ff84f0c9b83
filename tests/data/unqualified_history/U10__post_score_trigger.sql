DROP TRIGGER votes_refresh_score ON votes;
DROP FUNCTION post_score_refresh();
