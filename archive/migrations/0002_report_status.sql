-- Schema 2: each aggregate report's records by status, for the report
-- explorer's status and DMARC result filters without reading records.
-- A record passed when both aligned DKIM and SPF passed, failed when DMARC
-- failed (neither passed), and is partial otherwise (DMARC passed on one).
-- Records with a bad count are in none.
ALTER TABLE aggregate_reports ADD COLUMN pass_records INTEGER NOT NULL DEFAULT 0;
ALTER TABLE aggregate_reports ADD COLUMN partial_records INTEGER NOT NULL DEFAULT 0;
ALTER TABLE aggregate_reports ADD COLUMN failed_records INTEGER NOT NULL DEFAULT 0;

UPDATE aggregate_reports SET
	pass_records = (SELECT count(*) FROM aggregate_records r WHERE r.report = aggregate_reports.id
		AND (r.problem = '' OR r.problem LIKE 'source_ip%') AND r.dkim = 'pass' AND r.spf = 'pass'),
	partial_records = (SELECT count(*) FROM aggregate_records r WHERE r.report = aggregate_reports.id
		AND (r.problem = '' OR r.problem LIKE 'source_ip%') AND r.dmarc = 'pass' AND NOT (r.dkim = 'pass' AND r.spf = 'pass')),
	failed_records = (SELECT count(*) FROM aggregate_records r WHERE r.report = aggregate_reports.id
		AND (r.problem = '' OR r.problem LIKE 'source_ip%') AND r.dmarc <> 'pass');

-- The list's default order (newest first) and its date filter.
CREATE INDEX aggregate_reports_begin ON aggregate_reports (begin_time);
