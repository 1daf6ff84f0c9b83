-- Pretty URLs: a slug per post, filled in for the posts that exist.
CREATE FUNCTION slugify(input text) RETURNS text
LANGUAGE plpgsql IMMUTABLE
AS $$
DECLARE
    result text;
BEGIN
    result := lower(input);
    result := regexp_replace(result, '[^a-z0-9]+', '-', 'g');
    result := btrim(result, '-');
    RETURN result;
END;
$$;

ALTER TABLE posts ADD COLUMN slug text;

-- tenantmig:allow unbatched-dml history: ran in production in 2019, a few hundred posts
UPDATE posts SET slug = slugify(title) || '-' || id;
