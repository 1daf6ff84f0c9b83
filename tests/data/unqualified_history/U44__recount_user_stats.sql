-- The rows V44 added for users without activity go; the counts were right anyway.
DELETE FROM user_stats WHERE post_count = 0 AND comment_count = 0;
