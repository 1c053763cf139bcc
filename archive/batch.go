package archive

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// Batch is what Apply writes in one transaction: whole inputs, each with
// its mark, its reports and the counter increments they bring.
type Batch struct {
	Inputs []Input
	// Forget are marks of inputs no longer present (moved away, deleted).
	Forget     []string
	Identities []Identity
	Aggregates []*Aggregate
	TLS        []*TLS
	Failures   []*Failure
	// Totals are counter increments: family -> labels (values joined by
	// LabelSep) -> increment. A zero increment creates the series.
	Totals    map[string]map[string]uint64
	Reporters []Reporter // the watchdog's new view of these reporters
	Selectors []Selector
	DNS       []DNSRecord
	DNSLog    []DNSChange
	Meta      map[string]string // meta keys to set
}

// ErrCountedElsewhere: a report of the batch was counted meanwhile by
// another exporter sharing the archive. Nothing of the batch is written;
// its input is to be read again, which finds the report known.
var ErrCountedElsewhere = errors.New("counted meanwhile by another exporter sharing the archive")

// LabelSep joins the label values of a series in Batch.Totals: 0xff is
// never part of UTF-8 text, which every label value is.
const LabelSep = "\xff"

// Empty reports whether b writes nothing.
func (b *Batch) Empty() bool {
	return len(b.Inputs) == 0 && len(b.Forget) == 0 && len(b.Identities) == 0 && len(b.Aggregates) == 0 &&
		len(b.TLS) == 0 && len(b.Failures) == 0 && len(b.Totals) == 0 && len(b.Reporters) == 0 &&
		len(b.Selectors) == 0 && len(b.DNS) == 0 && len(b.DNSLog) == 0 && len(b.Meta) == 0
}

// Input is the mark of an input read: its path (a file's absolute path,
// or imap://source/uidvalidity/uid), and whether it was refused, why.
type Input struct {
	Path, Source, Mark string
	Refused            bool
	Reason             string // a dmarc_reports_rejected_total reason
	Error              string
	Read               time.Time
}

// Identity is a report's identity (a hash of who sent it, its id, range
// and domain), kept to refuse a second delivery.
type Identity struct {
	ID        string
	FirstSeen time.Time
}

// Aggregate is an aggregate report as counted: its labels, what it says,
// where it came from, and its records with the identity of their sources.
type Aggregate struct {
	Identity         string
	Domain, Reporter string // the labels it was counted under
	Header           *report.Aggregate
	// Records are at most MaxRecordsKept of its records, in order.
	Records        []Record
	RecordCount    int // records in the report, kept or not
	InvalidRecords int
	Messages       uint64
	FailedMessages uint64 // messages of records whose DMARC result is fail
	Source, Input  string
	Received       time.Time
	// Raw is the report as received (its XML), gzip-compressed; nil when
	// not kept.
	Raw []byte
}

// MaxRecordsKept bounds the records kept per report: real reports have a
// few thousand at most; a forged one of millions is counted in full but
// keeps only this many rows (records_kept says so).
const MaxRecordsKept = 100_000

// Record is a record with the identity of its source at ingest.
type Record struct {
	*report.Record
	DMARC  string // pass or fail
	Source SourceIdentity
}

// The status of a record, as the report explorer colours it.
const (
	RecordPassed  = "pass"    // aligned DKIM and SPF both passed
	RecordPartial = "partial" // DMARC passed on one of them
	RecordFailed  = "fail"    // DMARC failed
)

// RecordStatus is the status of a record with these policy-evaluated
// (aligned) DKIM and SPF results and DMARC result.
func RecordStatus(dkim, spf, dmarc string) string {
	switch {
	case dmarc != "pass":
		return RecordFailed
	case dkim == "pass" && spf == "pass":
		return RecordPassed
	}
	return RecordPartial
}

// SourceIdentity is who sent a record's messages, as enrichment said.
type SourceIdentity struct {
	ASN                       uint32
	Org, Country, Name, Class string
	Reason                    string // why it has its class
}

// TLS is an SMTP TLS report as counted.
type TLS struct {
	Identity, Reporter string
	Report             *report.TLSReport
	// Domains are the domain labels of the report's policies, in order;
	// "" for a policy of a domain not monitored.
	Domains       []string
	Source, Input string
	Received      time.Time
	Raw           []byte // the report as received (its JSON), gzip; nil when not kept
}

// Failure is a failure report as counted; Redacted is kept only when the
// configuration keeps samples.
type Failure struct {
	Identity, Domain, Reporter  string
	AuthFailure, DeliveryResult string
	Source, Input               string
	Received                    time.Time
	Redacted                    *report.FailureReport
}

// Reporter is the watchdog's view of a reporter of a domain.
type Reporter struct {
	Domain, Reporter      string
	LastEnd, LastReceived int64
	Ends                  []int64
}

// Selector is a DKIM selector seen in a domain's reports.
type Selector struct{ Domain, Selector string }

// DNSRecord is the DNS monitor's last observation of a record, as JSON.
type DNSRecord struct {
	Domain, Record string
	State          []byte
}

// DNSChange is a change of a record's text.
type DNSChange struct {
	Domain, Record string
	Time           int64
	Texts          []string
}

// Apply writes a batch in one transaction: all of it, or, on error,
// nothing.
func (a *Archive) Apply(b *Batch) error {
	if b.Empty() {
		return nil
	}
	ctx := context.Background()
	tx, err := a.h().w.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("archive: begin: %w", err)
	}
	if err := apply(ctx, tx, b, !a.postgres); err != nil {
		tx.Rollback()
		return fmt.Errorf("archive: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("archive: commit: %w", err)
	}
	return nil
}

// stmts prepares statements once per transaction (SQLite); pgx caches
// them per connection itself, where preparing them again in each
// transaction would cost a round trip each (PostgreSQL).
type stmts struct {
	tx      *sql.Tx
	m       map[string]*sql.Stmt
	prepare bool
}

func (s *stmts) exec(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if !s.prepare {
		return s.tx.ExecContext(ctx, query, args...)
	}
	st, ok := s.m[query]
	if !ok {
		var err error
		if st, err = s.tx.PrepareContext(ctx, query); err != nil {
			return nil, err
		}
		s.m[query] = st
	}
	return st.ExecContext(ctx, args...)
}

func (s *stmts) close() {
	for _, st := range s.m {
		st.Close()
	}
}

func apply(ctx context.Context, tx *sql.Tx, b *Batch, prepare bool) error {
	s := &stmts{tx: tx, m: map[string]*sql.Stmt{}, prepare: prepare}
	defer s.close()
	for _, in := range b.Inputs {
		if _, err := s.exec(ctx, `INSERT INTO inputs (path, source, mark, refused, reason, error, read_at) VALUES (?, ?, ?, ?, ?, ?, ?)
			ON CONFLICT (path) DO UPDATE SET source = excluded.source, mark = excluded.mark, refused = excluded.refused,
			reason = excluded.reason, error = excluded.error, read_at = excluded.read_at`,
			in.Path, in.Source, in.Mark, in.Refused, in.Reason, in.Error, in.Read.Unix()); err != nil {
			return fmt.Errorf("input %s: %w", in.Path, err)
		}
	}
	for _, p := range b.Forget {
		if _, err := s.exec(ctx, "DELETE FROM inputs WHERE path = ?", p); err != nil {
			return fmt.Errorf("forget input %s: %w", p, err)
		}
	}
	slices.SortFunc(b.Identities, func(x, y Identity) int { return strings.Compare(x.ID, y.ID) })
	for _, id := range b.Identities {
		res, err := s.exec(ctx, "INSERT INTO report_identities (identity, first_seen) VALUES (?, ?) ON CONFLICT DO NOTHING",
			id.ID, id.FirstSeen.Unix())
		if err != nil {
			return fmt.Errorf("report identity: %w", err)
		}
		if n, err := res.RowsAffected(); err == nil && n == 0 {
			return fmt.Errorf("report %s: %w", id.ID, ErrCountedElsewhere)
		}
	}
	for _, r := range b.Aggregates {
		if err := insertAggregate(ctx, s, r); err != nil {
			return fmt.Errorf("report %q of %s: %w", r.Header.Metadata.ReportID, r.Input, err)
		}
	}
	for _, r := range b.TLS {
		if err := insertTLS(ctx, s, r); err != nil {
			return fmt.Errorf("SMTP TLS report %q of %s: %w", r.Report.ReportID, r.Input, err)
		}
	}
	for _, f := range b.Failures {
		var redacted any
		if f.Redacted != nil {
			data, err := json.Marshal(f.Redacted)
			if err != nil {
				return err
			}
			redacted = string(data)
		}
		if err := replaced(ctx, s, "failure_reports", f.Identity); err != nil {
			return err
		}
		if _, err := s.exec(ctx, `INSERT INTO failure_reports (identity, domain, reporter, auth_failure, delivery_result, source, input, received, redacted)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, f.Identity, f.Domain, f.Reporter, f.AuthFailure, f.DeliveryResult,
			f.Source, f.Input, f.Received.Unix(), redacted); err != nil {
			return fmt.Errorf("failure report of %s: %w", f.Input, err)
		}
	}
	// Rows are written in a fixed order, so that two exporters writing
	// one PostgreSQL archive at once take their row locks in the same
	// order and never deadlock.
	for _, family := range slices.Sorted(maps.Keys(b.Totals)) {
		series := b.Totals[family]
		for _, labels := range slices.Sorted(maps.Keys(series)) {
			if _, err := s.exec(ctx, `INSERT INTO totals (family, labels, value) VALUES (?, ?, ?)
				ON CONFLICT (family, labels) DO UPDATE SET value = totals.value + excluded.value`, family, []byte(labels), int64(series[labels])); err != nil {
				return fmt.Errorf("totals %s: %w", family, err)
			}
		}
	}
	for _, r := range b.Reporters {
		// The newest of what this exporter and another sharing the
		// archive saw (the ends are this exporter's view).
		if _, err := s.exec(ctx, `INSERT INTO reporters (domain, reporter, last_end, last_received, ends) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (domain, reporter) DO UPDATE SET
				last_end = CASE WHEN excluded.last_end > reporters.last_end THEN excluded.last_end ELSE reporters.last_end END,
				last_received = CASE WHEN excluded.last_received > reporters.last_received THEN excluded.last_received ELSE reporters.last_received END,
				ends = excluded.ends`,
			r.Domain, r.Reporter, r.LastEnd, r.LastReceived, jsonText(r.Ends)); err != nil {
			return fmt.Errorf("reporter %s: %w", r.Reporter, err)
		}
	}
	for _, sel := range b.Selectors {
		if _, err := s.exec(ctx, "INSERT INTO dkim_selectors (domain, selector) VALUES (?, ?) ON CONFLICT DO NOTHING", sel.Domain, sel.Selector); err != nil {
			return fmt.Errorf("DKIM selector: %w", err)
		}
	}
	for _, d := range b.DNS {
		if _, err := s.exec(ctx, `INSERT INTO dns_records (domain, record, state) VALUES (?, ?, ?)
			ON CONFLICT (domain, record) DO UPDATE SET state = excluded.state`, d.Domain, d.Record, string(d.State)); err != nil {
			return fmt.Errorf("DNS record %s of %s: %w", d.Record, d.Domain, err)
		}
	}
	for _, c := range b.DNSLog {
		if _, err := s.exec(ctx, "INSERT INTO dns_changes (domain, record, time, texts) VALUES (?, ?, ?, ?)",
			c.Domain, c.Record, c.Time, jsonText(c.Texts)); err != nil {
			return fmt.Errorf("DNS change of %s: %w", c.Domain, err)
		}
	}
	for k, v := range b.Meta {
		if _, err := s.exec(ctx, "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value", k, v); err != nil {
			return fmt.Errorf("meta %s: %w", k, err)
		}
	}
	return nil
}

// jsonText is v as JSON text; a nil slice is an empty array.
func jsonText[T any](v []T) string {
	if v == nil {
		return "[]"
	}
	data, _ := json.Marshal(v) // slices of strings, numbers and plain structs
	return string(data)
}

// replaced deletes the earlier copy of a report counted again because its
// identity was forgotten (state.dedup_retention shorter than
// archive.retention): the archive keeps the copy that was counted last.
func replaced(ctx context.Context, s *stmts, table, identity string) error {
	_, err := s.exec(ctx, "DELETE FROM "+table+" WHERE identity = ?", identity)
	return err
}

func insertAggregate(ctx context.Context, s *stmts, r *Aggregate) error {
	if err := replaced(ctx, s, "aggregate_reports", r.Identity); err != nil {
		return err
	}
	h := r.Header
	status := map[string]int{}
	for _, rec := range r.Records {
		if !rec.BadCount {
			status[RecordStatus(string(rec.DKIM), string(rec.SPF), rec.DMARC)]++
		}
	}
	var pct any
	if h.Policy.Pct != nil {
		pct = *h.Policy.Pct
	}
	// A report's number is never given twice, even after the newest report
	// was deleted (SQLite would reuse its rowid): the remote-write
	// watermark counts on numbers only growing. meta's last_report_id
	// remembers the highest given.
	// The meta row is updated in place (a row lock where exporters share
	// a PostgreSQL archive), so two exporters never take the same number.
	var newest int64
	if err := s.tx.QueryRowContext(ctx, "SELECT coalesce(max(id), 0) FROM aggregate_reports").Scan(&newest); err != nil {
		return err
	}
	var given string
	if err := s.tx.QueryRowContext(ctx, `INSERT INTO meta (key, value) VALUES ('last_report_id', CAST(CAST(?1 AS BIGINT) + 1 AS TEXT))
		ON CONFLICT (key) DO UPDATE SET value = CAST(CASE WHEN CAST(meta.value AS BIGINT) >= CAST(?1 AS BIGINT)
			THEN CAST(meta.value AS BIGINT) + 1 ELSE CAST(?1 AS BIGINT) + 1 END AS TEXT)
		RETURNING value`, newest).Scan(&given); err != nil {
		return err
	}
	id, err := strconv.ParseInt(given, 10, 64)
	if err != nil {
		return fmt.Errorf("meta last_report_id %q: %w", given, err)
	}
	if _, err := s.exec(ctx, `INSERT INTO aggregate_reports (id, identity, domain, reporter, org_name, email, extra_contact_info, report_id,
		begin_time, end_time, errors, generator, version, namespace, policy_domain, adkim, aspf, p, sp, np, pct, fo, testing,
		discovery_method, extensions, records, records_kept, invalid_records, messages, failed_messages, source, input, received, raw,
		pass_records, partial_records, failed_records)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
		id, r.Identity, r.Domain, r.Reporter, h.Metadata.OrgName, h.Metadata.Email, h.Metadata.ExtraContactInfo, h.Metadata.ReportID,
		h.Metadata.Begin.Unix(), h.Metadata.End.Unix(), jsonText(h.Metadata.Errors), h.Metadata.Generator, h.Version, h.Namespace,
		h.Policy.Domain, string(h.Policy.ADKIM), string(h.Policy.ASPF), string(h.Policy.P), string(h.Policy.SP), string(h.Policy.NP),
		pct, h.Policy.FO, string(h.Policy.Testing), string(h.Policy.DiscoveryMethod), jsonText(h.Extensions),
		r.RecordCount, len(r.Records), r.InvalidRecords, int64(r.Messages), int64(r.FailedMessages), r.Source, r.Input, r.Received.Unix(), r.Raw,
		status[RecordPassed], status[RecordPartial], status[RecordFailed]); err != nil {
		return err
	}
	for n, rec := range r.Records {
		ip := ""
		if rec.SourceIP.IsValid() {
			ip = rec.SourceIP.String()
		}
		if _, err := s.exec(ctx, `INSERT INTO aggregate_records (report, n, source_ip, count, disposition, dkim, spf, dmarc, reasons,
			header_from, envelope_from, envelope_to, problem, extensions, source_asn, source_org, source_country, source_name,
			source_class, class_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			id, n, ip, int64(rec.Count), string(rec.Disposition), string(rec.DKIM), string(rec.SPF), rec.DMARC, jsonText(rec.Reasons),
			rec.HeaderFrom, rec.EnvelopeFrom, rec.EnvelopeTo, rec.Problem, jsonText(rec.Extensions), int64(rec.Source.ASN),
			rec.Source.Org, rec.Source.Country, rec.Source.Name, rec.Source.Class, rec.Source.Reason); err != nil {
			return fmt.Errorf("record %d: %w", n, err)
		}
		for i, d := range rec.DKIMResults {
			if _, err := s.exec(ctx, "INSERT INTO record_dkim (report, n, i, domain, selector, result, human_result) VALUES (?, ?, ?, ?, ?, ?, ?)",
				id, n, i, d.Domain, d.Selector, string(d.Result), d.HumanResult); err != nil {
				return fmt.Errorf("record %d: dkim %d: %w", n, i, err)
			}
		}
		for i, p := range rec.SPFResults {
			if _, err := s.exec(ctx, "INSERT INTO record_spf (report, n, i, domain, scope, result, human_result) VALUES (?, ?, ?, ?, ?, ?, ?)",
				id, n, i, p.Domain, string(p.Scope), string(p.Result), p.HumanResult); err != nil {
				return fmt.Errorf("record %d: spf %d: %w", n, i, err)
			}
		}
	}
	return nil
}

func insertTLS(ctx context.Context, s *stmts, r *TLS) error {
	if err := replaced(ctx, s, "tls_reports", r.Identity); err != nil {
		return err
	}
	t := r.Report
	var id int64
	err := s.tx.QueryRowContext(ctx, `INSERT INTO tls_reports (identity, reporter, org_name, contact_info, report_id, begin_time, end_time, source, input, received, raw)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`, r.Identity, r.Reporter, t.OrganizationName, t.ContactInfo, t.ReportID,
		t.Begin.Unix(), t.End.Unix(), r.Source, r.Input, r.Received.Unix(), r.Raw).Scan(&id)
	if err != nil {
		return err
	}
	for n, p := range t.Policies {
		domain := ""
		if n < len(r.Domains) {
			domain = r.Domains[n]
		}
		if _, err := s.exec(ctx, `INSERT INTO tls_policies (report, n, domain, policy_type, policy_strings, policy_domain, mx_hosts, successful, failed)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`, id, n, domain, string(p.Type), jsonText(p.Strings), p.Domain, jsonText(p.MXHosts),
			int64(p.Successful), int64(p.Failed)); err != nil {
			return fmt.Errorf("policy %d: %w", n, err)
		}
		for i, f := range p.Failures {
			if _, err := s.exec(ctx, `INSERT INTO tls_failures (report, policy, i, result_type, sending_mta_ip, receiving_mx_hostname,
				receiving_mx_helo, receiving_ip, failed_sessions, additional_information, failure_reason_code) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
				id, n, i, string(f.ResultType), f.SendingMTAIP, f.ReceivingMXHostname, f.ReceivingMXHelo, f.ReceivingIP,
				int64(f.FailedSessions), f.AdditionalInfo, f.FailureReasonCode); err != nil {
				return fmt.Errorf("policy %d: failure %d: %w", n, i, err)
			}
		}
	}
	return nil
}
