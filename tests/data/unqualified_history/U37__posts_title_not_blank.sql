ALTER TABLE posts DROP CONSTRAINT posts_title_not_blank;
