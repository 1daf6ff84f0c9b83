-- Addresses were free text; a domain keeps the obviously broken ones out.
CREATE DOMAIN email_address AS text
    CONSTRAINT email_address_format CHECK (VALUE ~ '^[^@[:space:]]+@[^@[:space:]]+$');

-- tenantmig:allow alter-column-type history: ran in production in 2019 on a small table
ALTER TABLE users ALTER COLUMN email TYPE email_address USING email::email_address;
