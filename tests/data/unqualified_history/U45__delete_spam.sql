-- The post comes back; its comments, votes and reports do not.
INSERT INTO posts (author_id, title, body, status, created_at, slug, category_id)
SELECT u.id, 'Buy cheap watches', 'http://spam.invalid', 'published',
       '2019-06-01 03:00:00+00', 'buy-cheap-watches',
       (SELECT id FROM categories WHERE slug = 'general')
FROM users u
WHERE u.username = 'spammer';
