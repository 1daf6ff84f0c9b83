ALTER TABLE posts ADD CONSTRAINT posts_title_not_blank CHECK (btrim(title) <> '') NOT VALID;
