-- Adds 'portal' to invoice_channel, alone in its migration (seed pattern 8,
-- corrected by NOTES-ON-SEED). No table lock, but the type stays locked until
-- commit, so nothing else runs in this transaction. PG 12+ allows ADD VALUE in
-- a transaction, yet the new value cannot be used before commit (55P04), so
-- any code or migration that writes 'portal' must come in a later version.
-- IF NOT EXISTS makes a retry harmless. Enum values cannot be dropped, so
-- there is deliberately no U12: removing 'portal' would mean a new type and
-- rewriting invoices under ACCESS EXCLUSIVE.
ALTER TYPE {{schema}}.invoice_channel ADD VALUE IF NOT EXISTS 'portal';
