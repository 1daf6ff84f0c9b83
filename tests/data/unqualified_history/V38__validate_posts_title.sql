ALTER TABLE posts VALIDATE CONSTRAINT posts_title_not_blank;
