-- A validated constraint cannot be marked NOT VALID again: re-add it unvalidated.
ALTER TABLE posts DROP CONSTRAINT posts_title_not_blank;
ALTER TABLE posts ADD CONSTRAINT posts_title_not_blank CHECK (btrim(title) <> '') NOT VALID;
