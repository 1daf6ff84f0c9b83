-- tenantmig:lock-timeout=5s
-- Undo of V11: drops invoices.channel (and its values) and the enum type.
-- Catalog-only; brief ACCESS EXCLUSIVE on invoices, waiting at most 5s.
ALTER TABLE {{schema}}.invoices DROP COLUMN channel;
DROP TYPE {{schema}}.invoice_channel;
