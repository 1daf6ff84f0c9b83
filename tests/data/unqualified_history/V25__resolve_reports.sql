-- Moderators resolve reports through a procedure; the spam post reported by hand in
-- the early days is filed and resolved.
CREATE PROCEDURE resolve_reports(target_post bigint)
LANGUAGE plpgsql
AS $$
BEGIN
    UPDATE reports SET resolved = true WHERE post_id = target_post AND NOT resolved;
END;
$$;

INSERT INTO reports (post_id, reporter_id, reason)
SELECT p.id, u.id, 'spam'
FROM posts p JOIN users u ON u.username = 'bob'
WHERE p.title = 'Buy cheap watches';

INSERT INTO reports (post_id, reporter_id, reason)
SELECT p.id, NULL, 'other'
FROM posts p
WHERE p.title = 'Welcome';

DO $$
DECLARE
    welcome bigint;
BEGIN
    SELECT id INTO welcome FROM posts WHERE title = 'Welcome';
    CALL resolve_reports(welcome);
END;
$$;
