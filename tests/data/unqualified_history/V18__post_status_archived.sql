-- tenantmig:no-transaction
-- Posts can be archived.
-- tenantmig:allow enum-value-without-if-not-exists history: ran in production in 2020 as written
ALTER TYPE post_status ADD VALUE 'archived' AFTER 'published';
