-- Every new community starts with the system account, a welcome post and a little
-- activity. The inserts fire the score, user_stats and subscription triggers.
INSERT INTO users (email, username, is_admin) VALUES
    ('system@example.invalid', 'system', true),
    ('alice@example.invalid', 'alice', false),
    ('bob@example.invalid', 'bob', false),
    ('spammer@example.invalid', 'spammer', false);

INSERT INTO posts (author_id, title, body, status, created_at)
SELECT u.id, v.title, v.body, v.status::post_status, v.created_at::timestamptz
FROM (VALUES
        ('system', 'Welcome', 'Say hello!', 'published', '2019-01-15 09:00:00+00'),
        ('alice', 'My first draft', 'Not finished', 'draft', '2019-05-01 12:30:00+00'),
        ('spammer', 'Buy cheap watches', 'http://spam.invalid', 'published',
         '2019-06-01 03:00:00+00')
     ) AS v (username, title, body, status, created_at)
JOIN users u ON u.username = v.username
ORDER BY v.created_at;

INSERT INTO comments (post_id, author_id, body, created_at)
SELECT p.id, u.id, v.body, v.created_at::timestamptz
FROM (VALUES
        ('Welcome', 'alice', 'Hello!', '2019-01-15 10:00:00+00'),
        ('Welcome', 'bob', 'Hi all', '2019-01-15 11:00:00+00'),
        ('Welcome', 'alice', 'Glad to be here', '2019-01-16 08:00:00+00'),
        ('Buy cheap watches', 'bob', 'Reported.', '2019-06-01 04:00:00+00')
     ) AS v (title, username, body, created_at)
JOIN posts p ON p.title = v.title
JOIN users u ON u.username = v.username
ORDER BY v.created_at;

INSERT INTO votes (user_id, post_id, value)
SELECT u.id, p.id, v.value
FROM (VALUES
        ('alice', 'Welcome', 1), ('bob', 'Welcome', 1),
        ('alice', 'Buy cheap watches', -1), ('bob', 'Buy cheap watches', -1)
     ) AS v (username, title, value)
JOIN users u ON u.username = v.username
JOIN posts p ON p.title = v.title;

INSERT INTO post_tags (post_id, tag_id)
SELECT p.id, t.id FROM posts p JOIN tags t ON t.name = 'announcements'
WHERE p.title = 'Welcome';
