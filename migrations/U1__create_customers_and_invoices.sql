-- tenantmig:allow drop-table undo of V1: removing both tables and their rows is the point of this file
-- Undo of V1: drops both tables and every row in them (the tenant's version
-- history lives in its own table and is not touched). invoices goes first
-- because, once V9 ran, it references customers; no CASCADE, so anything
-- unexpected that still depends on these tables makes the undo fail instead of
-- silently dropping it.
DROP TABLE {{schema}}.invoices;
DROP TABLE {{schema}}.customers;
