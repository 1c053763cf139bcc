-- Schema 1, for PostgreSQL: the tables of ../0001_init.sql in its types
-- (BIGINT, BYTEA, BOOLEAN, identity columns). Schema 1: reports, their records, the inputs they came from, the
-- counters served on /metrics, the watchdog's and the DNS monitor's state.
-- Times are Unix seconds (UTC).

-- Key/value facts about the archive itself (when it began, ...).
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value TEXT NOT NULL
);

-- Every input read (a file, or a mail as imap://source/uidvalidity/uid),
-- with the mark that tells whether it changed since, and whether it was
-- refused and why. A source forgets the marks of inputs no longer there.
CREATE TABLE inputs (
	path    TEXT COLLATE "C" PRIMARY KEY,
	source  TEXT NOT NULL,
	mark    TEXT NOT NULL,
	refused BOOLEAN NOT NULL,
	reason  TEXT NOT NULL,      -- a dmarc_reports_rejected_total reason, '' when read
	error   TEXT NOT NULL,      -- the error in words, '' when read
	read_at BIGINT NOT NULL
);

-- Report identities, to refuse a second delivery of a report; kept for
-- state.dedup_retention, longer than the reports themselves may be.
CREATE TABLE report_identities (
	identity   TEXT PRIMARY KEY,
	first_seen BIGINT NOT NULL
);
CREATE INDEX report_identities_first_seen ON report_identities (first_seen);

-- DMARC aggregate reports (RFC 7489 appendix C, RFC 9990), as counted.
CREATE TABLE aggregate_reports (
	id                 BIGINT PRIMARY KEY,
	identity           TEXT NOT NULL UNIQUE,
	domain             TEXT NOT NULL,  -- the domain label it was counted under
	reporter           TEXT NOT NULL,  -- the reporter label it was counted under
	org_name           TEXT NOT NULL,
	email              TEXT NOT NULL,
	extra_contact_info TEXT NOT NULL,
	report_id          TEXT NOT NULL,
	begin_time         BIGINT NOT NULL,
	end_time           BIGINT NOT NULL,
	errors             TEXT NOT NULL,  -- JSON array
	generator          TEXT NOT NULL,
	version            TEXT NOT NULL,
	namespace          TEXT NOT NULL,
	policy_domain      TEXT NOT NULL,
	adkim              TEXT NOT NULL,
	aspf               TEXT NOT NULL,
	p                  TEXT NOT NULL,
	sp                 TEXT NOT NULL,
	np                 TEXT NOT NULL,
	pct                BIGINT,        -- NULL when absent (RFC 9990 dropped it)
	fo                 TEXT NOT NULL,
	testing            TEXT NOT NULL,
	discovery_method   TEXT NOT NULL,
	extensions         TEXT NOT NULL,  -- JSON array, '[]' when none
	records            BIGINT NOT NULL, -- records in the report
	records_kept       BIGINT NOT NULL, -- records in aggregate_records
	invalid_records    BIGINT NOT NULL,
	messages           BIGINT NOT NULL,
	failed_messages    BIGINT NOT NULL, -- messages of records whose DMARC result is fail
	source             TEXT NOT NULL,  -- the configured source it came from
	input              TEXT NOT NULL,  -- the file or mail
	received           BIGINT NOT NULL,
	raw                BYTEA            -- the report as received, gzip; NULL when not kept
);
CREATE INDEX aggregate_reports_domain_end ON aggregate_reports (domain, end_time);
CREATE INDEX aggregate_reports_received ON aggregate_reports (received);
CREATE INDEX aggregate_reports_end ON aggregate_reports (end_time);

-- The records of an aggregate report, with the source identity that
-- enrichment gave at ingest.
CREATE TABLE aggregate_records (
	report        BIGINT NOT NULL REFERENCES aggregate_reports (id) ON DELETE CASCADE,
	n             BIGINT NOT NULL,  -- position in the report, from 0
	source_ip     TEXT NOT NULL,     -- '' when unreadable (problem says so)
	count         BIGINT NOT NULL,
	disposition   TEXT NOT NULL,
	dkim          TEXT NOT NULL,     -- policy-evaluated (aligned) DKIM
	spf           TEXT NOT NULL,     -- policy-evaluated (aligned) SPF
	dmarc         TEXT NOT NULL,     -- pass when either aligned result passes
	reasons       TEXT NOT NULL,     -- JSON array of {type, comment}
	header_from   TEXT NOT NULL,
	envelope_from TEXT NOT NULL,
	envelope_to   TEXT NOT NULL,
	problem       TEXT NOT NULL,     -- why the record was not counted, '' when counted
	extensions    TEXT NOT NULL,
	source_asn    BIGINT NOT NULL,  -- 0 when unknown
	source_org    TEXT NOT NULL,
	source_country TEXT NOT NULL,
	source_name   TEXT NOT NULL,
	source_class  TEXT NOT NULL,
	class_reason  TEXT NOT NULL,
	PRIMARY KEY (report, n)
);

-- Every auth_results/dkim of a record.
CREATE TABLE record_dkim (
	report       BIGINT NOT NULL,
	n            BIGINT NOT NULL,
	i            BIGINT NOT NULL,
	domain       TEXT NOT NULL,
	selector     TEXT NOT NULL,
	result       TEXT NOT NULL,
	human_result TEXT NOT NULL,
	PRIMARY KEY (report, n, i),
	FOREIGN KEY (report, n) REFERENCES aggregate_records (report, n) ON DELETE CASCADE
);

-- Every auth_results/spf of a record.
CREATE TABLE record_spf (
	report       BIGINT NOT NULL,
	n            BIGINT NOT NULL,
	i            BIGINT NOT NULL,
	domain       TEXT NOT NULL,
	scope        TEXT NOT NULL,
	result       TEXT NOT NULL,
	human_result TEXT NOT NULL,
	PRIMARY KEY (report, n, i),
	FOREIGN KEY (report, n) REFERENCES aggregate_records (report, n) ON DELETE CASCADE
);

-- SMTP TLS reports (RFC 8460).
CREATE TABLE tls_reports (
	id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	identity     TEXT NOT NULL UNIQUE,
	reporter     TEXT NOT NULL,  -- the reporter label
	org_name     TEXT NOT NULL,
	contact_info TEXT NOT NULL,
	report_id    TEXT NOT NULL,
	begin_time   BIGINT NOT NULL,
	end_time     BIGINT NOT NULL,
	source       TEXT NOT NULL,
	input        TEXT NOT NULL,
	received     BIGINT NOT NULL,
	raw          BYTEA
);
CREATE INDEX tls_reports_end ON tls_reports (end_time);

CREATE TABLE tls_policies (
	report         BIGINT NOT NULL REFERENCES tls_reports (id) ON DELETE CASCADE,
	n              BIGINT NOT NULL,
	domain         TEXT NOT NULL,  -- the domain label, '' when not monitored
	policy_type    TEXT NOT NULL,
	policy_strings TEXT NOT NULL,  -- JSON array
	policy_domain  TEXT NOT NULL,
	mx_hosts       TEXT NOT NULL,  -- JSON array
	successful     BIGINT NOT NULL,
	failed         BIGINT NOT NULL,
	PRIMARY KEY (report, n)
);

CREATE TABLE tls_failures (
	report                 BIGINT NOT NULL,
	policy                 BIGINT NOT NULL,
	i                      BIGINT NOT NULL,
	result_type            TEXT NOT NULL,
	sending_mta_ip         TEXT NOT NULL,
	receiving_mx_hostname  TEXT NOT NULL,
	receiving_mx_helo      TEXT NOT NULL,
	receiving_ip           TEXT NOT NULL,
	failed_sessions        BIGINT NOT NULL,
	additional_information TEXT NOT NULL,
	failure_reason_code    TEXT NOT NULL,
	PRIMARY KEY (report, policy, i),
	FOREIGN KEY (report, policy) REFERENCES tls_policies (report, n) ON DELETE CASCADE
);

-- DMARC failure reports (RFC 9991): what is counted, and the report
-- redacted (no local parts, no subject) when failure_samples keeps it.
CREATE TABLE failure_reports (
	id              BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
	identity        TEXT NOT NULL UNIQUE,
	domain          TEXT NOT NULL,
	reporter        TEXT NOT NULL,
	auth_failure    TEXT NOT NULL,
	delivery_result TEXT NOT NULL,
	source          TEXT NOT NULL,
	input           TEXT NOT NULL,
	received        BIGINT NOT NULL,
	redacted        TEXT             -- JSON; NULL when not kept
);
CREATE INDEX failure_reports_received ON failure_reports (received);

-- Counter totals as served on /metrics: a family (metric name) and its
-- label values (joined by 0xff). Updated in the same transaction as the
-- reports they count; never lowered, retention does not touch them.
CREATE TABLE totals (
	family TEXT NOT NULL,
	labels BYTEA NOT NULL,
	value  BIGINT NOT NULL,
	PRIMARY KEY (family, labels)
);

-- The watchdog's view of a reporter: its newest report and the ends of
-- its latest ones, from which it learns the reporter's interval.
CREATE TABLE reporters (
	domain        TEXT NOT NULL,
	reporter      TEXT NOT NULL,
	last_end      BIGINT NOT NULL,
	last_received BIGINT NOT NULL,
	ends          TEXT NOT NULL,  -- JSON array, ascending
	PRIMARY KEY (domain, reporter)
);

-- DKIM selectors seen in reports, which the DNS monitor watches.
CREATE TABLE dkim_selectors (
	domain   TEXT NOT NULL,
	selector TEXT NOT NULL,
	PRIMARY KEY (domain, selector)
);

-- The DNS monitor's last observation of a record.
CREATE TABLE dns_records (
	domain TEXT NOT NULL,
	record TEXT NOT NULL,
	state  TEXT NOT NULL,  -- JSON
	PRIMARY KEY (domain, record)
);

-- Every change of a watched record's text.
CREATE TABLE dns_changes (
	rowid  BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, -- SQLite's implicit order of insertion
	domain TEXT NOT NULL,
	record TEXT NOT NULL,
	time   BIGINT NOT NULL,
	texts  TEXT NOT NULL  -- JSON array
);
CREATE INDEX dns_changes_record ON dns_changes (domain, record, time);
