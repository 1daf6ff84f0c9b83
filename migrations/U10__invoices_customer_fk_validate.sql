-- tenantmig:lock-timeout=5s
-- Undo of V10: PostgreSQL cannot mark a constraint not valid again, so the
-- foreign key is dropped and re-added NOT VALID in one transaction, which is
-- exactly the state after V9 with no window without the key. No scan; SHARE
-- ROW EXCLUSIVE / ACCESS EXCLUSIVE for milliseconds, waiting at most 5s.
ALTER TABLE {{schema}}.invoices DROP CONSTRAINT invoices_customer_id_fkey;
ALTER TABLE {{schema}}.invoices
    ADD CONSTRAINT invoices_customer_id_fkey
    FOREIGN KEY (customer_id) REFERENCES {{schema}}.customers (id)
    NOT VALID;
