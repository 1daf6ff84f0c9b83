-- tenantmig:allow rename-column history: undo of V28
ALTER TABLE post_labels RENAME COLUMN label_id TO tag_id;
-- tenantmig:allow rename-table history: undo of V28
ALTER TABLE post_labels RENAME TO post_tags;
ALTER INDEX labels_name_key RENAME TO tags_name_key;
ALTER INDEX labels_pkey RENAME TO tags_pkey;
-- tenantmig:allow rename-table history: undo of V28
ALTER TABLE labels RENAME TO tags;
