-- Creates the two tables the rest of the example set evolves: customers and
-- invoices. Safe: both tables are new, so the only locks are on objects nobody
-- else can see yet. invoices.customer_id has no foreign key on purpose: V9/V10
-- add it the zero-downtime way (NOT VALID, then VALIDATE in a later migration).
CREATE TABLE {{schema}}.customers (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name       text NOT NULL,
    email      varchar(50),
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE {{schema}}.invoices (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    customer_id  bigint NOT NULL,
    amount_cents bigint NOT NULL,
    sent_at      timestamptz,
    paid_at      timestamptz,
    created_at   timestamptz NOT NULL DEFAULT now()
);
