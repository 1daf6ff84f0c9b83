CREATE TABLE posts (
    id bigserial PRIMARY KEY,
    author_id integer NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    title text NOT NULL,
    body text NOT NULL DEFAULT '',
    status post_status NOT NULL DEFAULT 'draft',
    score integer NOT NULL DEFAULT 0,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX posts_author_id_idx ON posts (author_id);
CREATE INDEX posts_created_at_idx ON posts (created_at DESC);
