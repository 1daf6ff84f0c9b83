-- Foreign key invoices.customer_id -> customers(id), step 2 of 2: validate the
-- rows that existed before V9. VALIDATE CONSTRAINT takes SHARE UPDATE
-- EXCLUSIVE on invoices and ROW SHARE on customers, so reads and writes on both
-- go on during the scan (only true in a migration of its own: in the
-- transaction that added the key, its SHARE ROW EXCLUSIVE locks would still
-- block writes). Fails with 23503 if an invoice points at a missing customer.
ALTER TABLE {{schema}}.invoices VALIDATE CONSTRAINT invoices_customer_id_fkey;
