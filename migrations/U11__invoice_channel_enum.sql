-- tenantmig:lock-timeout=5s
-- tenantmig:allow drop-column undo of V11: runs only with a release of the app that predates invoices.channel
-- Undo of V11: drops invoices.channel (and its values) and the enum type.
-- Catalog-only; brief ACCESS EXCLUSIVE on invoices, waiting at most 5s.
ALTER TABLE {{schema}}.invoices DROP COLUMN channel;
DROP TYPE {{schema}}.invoice_channel;
