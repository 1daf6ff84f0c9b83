-- tenantmig:allow unbatched-dml history: removes the two rows V25 filed
DELETE FROM reports;
DROP PROCEDURE resolve_reports(bigint);
