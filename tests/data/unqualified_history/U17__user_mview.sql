DROP TRIGGER posts_refresh_user_mview ON posts;
DROP FUNCTION refresh_user_mview();
DROP MATERIALIZED VIEW user_mview;
