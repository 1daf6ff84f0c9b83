-- tenantmig:lock-timeout=5s
-- Undo of V9: drops the foreign key. Catalog-only; brief ACCESS EXCLUSIVE on
-- invoices and SHARE ROW EXCLUSIVE on customers, waiting at most 5s.
ALTER TABLE {{schema}}.invoices DROP CONSTRAINT invoices_customer_id_fkey;
