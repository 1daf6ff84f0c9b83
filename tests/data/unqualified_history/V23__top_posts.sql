-- The front page API returns a summary row type.
CREATE TYPE post_summary AS (
    id bigint,
    title text,
    rank double precision
);

CREATE FUNCTION top_posts(n integer DEFAULT 10) RETURNS SETOF post_summary
LANGUAGE sql STABLE
AS $$
    SELECT id, title::text, rank
    FROM post_view
    WHERE status = 'published'
    ORDER BY rank DESC, id
    LIMIT n
$$;
