DROP FUNCTION top_posts(integer);
DROP TYPE post_summary;
