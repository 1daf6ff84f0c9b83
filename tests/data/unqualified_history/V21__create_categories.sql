CREATE TABLE categories (
    id serial PRIMARY KEY,
    name text NOT NULL,
    slug text NOT NULL UNIQUE,
    parent_id integer REFERENCES categories (id),
    position integer NOT NULL DEFAULT 0,
    CONSTRAINT categories_not_own_parent CHECK (parent_id IS NULL OR parent_id <> id)
);

INSERT INTO categories (name, slug, position) VALUES
    ('General', 'general', 0),
    ('Support', 'support', 1),
    ('Meta', 'meta', 2);
