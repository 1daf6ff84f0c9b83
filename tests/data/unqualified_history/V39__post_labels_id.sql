-- The admin screen wants a surrogate key on post_labels.
-- tenantmig:allow add-column-volatile-default history: ran in production in 2022 on a small table
ALTER TABLE post_labels ADD COLUMN id bigint GENERATED ALWAYS AS IDENTITY;
