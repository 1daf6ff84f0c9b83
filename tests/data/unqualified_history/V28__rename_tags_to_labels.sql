-- The product calls them labels.
-- tenantmig:allow rename-table history: ran in production in 2021, app deployed with it
ALTER TABLE tags RENAME TO labels;
ALTER INDEX tags_pkey RENAME TO labels_pkey;
ALTER INDEX tags_name_key RENAME TO labels_name_key;
-- tenantmig:allow rename-table history: ran in production in 2021, app deployed with it
ALTER TABLE post_tags RENAME TO post_labels;
-- tenantmig:allow rename-column history: ran in production in 2021, app deployed with it
ALTER TABLE post_labels RENAME COLUMN tag_id TO label_id;
