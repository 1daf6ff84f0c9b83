-- Every post goes in a category; the existing ones in General.
-- tenantmig:allow constraint-not-valid history: ran in production in 2020 on a small table
ALTER TABLE posts ADD COLUMN category_id integer REFERENCES categories (id);

-- tenantmig:allow unbatched-dml history: a few hundred posts per tenant at the time
UPDATE posts SET category_id = (SELECT id FROM categories WHERE slug = 'general');

-- tenantmig:allow index-not-concurrent history: ran in production in 2020 on a small table
CREATE INDEX posts_category_id_idx ON posts (category_id);
