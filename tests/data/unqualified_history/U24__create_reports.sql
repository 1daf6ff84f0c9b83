-- report_number_seq is owned by reports.number and goes with the table.
-- tenantmig:allow drop-table history: undoes V24, which created it
DROP TABLE reports;
