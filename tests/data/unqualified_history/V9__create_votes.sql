CREATE TABLE votes (
    user_id integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    value smallint NOT NULL CHECK (value IN (-1, 1)),
    PRIMARY KEY (user_id, post_id)
);

CREATE INDEX votes_post_id_idx ON votes (post_id);
