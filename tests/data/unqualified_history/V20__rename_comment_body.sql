-- tenantmig:allow rename-column history: ran in production in 2020, app deployed with it
ALTER TABLE comments RENAME COLUMN body TO content;
