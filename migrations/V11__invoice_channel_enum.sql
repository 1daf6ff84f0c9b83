-- tenantmig:lock-timeout=5s
-- Enum type invoice_channel and a nullable invoices.channel column using it.
-- The type is created in the tenant schema and referenced
-- schema-qualified. Adding a nullable column without a default is
-- catalog-only: ACCESS EXCLUSIVE on invoices for milliseconds, waiting at
-- most 5s.
CREATE TYPE {{schema}}.invoice_channel AS ENUM ('email', 'post');
ALTER TABLE {{schema}}.invoices ADD COLUMN channel {{schema}}.invoice_channel;
