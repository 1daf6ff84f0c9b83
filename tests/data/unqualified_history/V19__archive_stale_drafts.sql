-- Drafts nobody touched since 2019 are archived.
UPDATE posts SET status = 'archived'
WHERE status = 'draft' AND created_at < '2020-01-01';
