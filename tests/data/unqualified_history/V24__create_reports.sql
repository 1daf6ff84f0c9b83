-- Moderation reports, numbered for humans from 1000 up.
CREATE SEQUENCE report_number_seq AS integer START WITH 1000 INCREMENT BY 1;

CREATE TABLE reports (
    id serial PRIMARY KEY,
    number integer NOT NULL DEFAULT nextval('report_number_seq') UNIQUE,
    post_id bigint NOT NULL REFERENCES posts (id) ON DELETE CASCADE,
    reporter_id integer REFERENCES users (id) ON DELETE SET NULL,
    reason text NOT NULL CHECK (reason IN ('spam', 'abuse', 'off-topic', 'other')),
    resolved boolean NOT NULL DEFAULT false,
    created_at timestamptz NOT NULL DEFAULT now()
);

ALTER SEQUENCE report_number_seq OWNED BY reports.number;
