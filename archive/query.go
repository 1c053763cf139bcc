package archive

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// ReportFilter selects aggregate reports, for the report explorer and
// `dmarc-exporter reports`. Zero fields select everything.
type ReportFilter struct {
	Domains, Reporters []string
	// From and Until select the reports whose date range overlaps
	// [From, Until).
	From, Until time.Time
	DMARC       string // DMARCAllPass, DMARCAllFail or DMARCMixed
	Status      string // StatusPassed, StatusFailed or StatusOther
	// Reports with a record of this source; nil ASN and Name select
	// any (0 and "" are values: an unknown AS, no name).
	Class string
	ASN   *uint32
	Name  *string
	IP    string
}

// The DMARC result filter: every counted record passed DMARC, every one
// failed, or some of each.
const (
	DMARCAllPass = "pass"
	DMARCAllFail = "fail"
	DMARCMixed   = "mixed"
)

// The status of a report: every record passed DKIM and SPF (green), at
// least one record failed DMARC (red), or neither: DMARC passed
// everywhere, but on one of DKIM and SPF somewhere (orange).
const (
	StatusPassed = "passed"
	StatusFailed = "failed"
	StatusOther  = "other"
)

// ReportSorts are the orders the report list knows, by name.
var ReportSorts = map[string]string{
	"begin":    "begin_time",
	"end":      "end_time",
	"received": "received",
	"domain":   "domain",
	"reporter": "reporter",
	"records":  "records",
	"messages": "messages",
	"failed":   "failed_messages",
}

// ReportRow is a report as the list shows it.
type ReportRow struct {
	ID             int64     `json:"id"`
	Domain         string    `json:"domain"`
	Reporter       string    `json:"reporter"`
	OrgName        string    `json:"org_name"`
	ReportID       string    `json:"report_id"`
	Begin          time.Time `json:"begin"`
	End            time.Time `json:"end"`
	Received       time.Time `json:"received"`
	Records        int       `json:"records"`
	Messages       uint64    `json:"messages"`
	FailedMessages uint64    `json:"failed_messages"`
	PassRecords    int       `json:"pass_records"`
	PartialRecords int       `json:"partial_records"`
	FailedRecords  int       `json:"failed_records"`
	Status         string    `json:"status"` // StatusPassed, StatusFailed or StatusOther
	Policy         string    `json:"policy"` // p= as the reporter saw it
}

const reportColumns = `id, domain, reporter, org_name, report_id, begin_time, end_time, received, records, messages,
	failed_messages, pass_records, partial_records, failed_records, p`

func scanReportRow(sc interface{ Scan(...any) error }, r *ReportRow) error {
	var begin, end, received int64
	if err := sc.Scan(&r.ID, &r.Domain, &r.Reporter, &r.OrgName, &r.ReportID, &begin, &end, &received, &r.Records,
		&r.Messages, &r.FailedMessages, &r.PassRecords, &r.PartialRecords, &r.FailedRecords, &r.Policy); err != nil {
		return err
	}
	r.Begin, r.End, r.Received = time.Unix(begin, 0).UTC(), time.Unix(end, 0).UTC(), time.Unix(received, 0).UTC()
	switch {
	case r.FailedRecords > 0:
		r.Status = StatusFailed
	case r.PartialRecords > 0:
		r.Status = StatusOther
	default:
		r.Status = StatusPassed
	}
	return nil
}

// where is the WHERE clause of f, with its arguments.
func (f *ReportFilter) where() (string, []any) {
	var conds []string
	var args []any
	in := func(column string, values []string) {
		if len(values) == 0 {
			return
		}
		conds = append(conds, column+" IN ("+placeholders(len(values))+")")
		for _, v := range values {
			args = append(args, v)
		}
	}
	in("domain", f.Domains)
	in("reporter", f.Reporters)
	if !f.From.IsZero() {
		conds = append(conds, "end_time > ?")
		args = append(args, f.From.Unix())
	}
	if !f.Until.IsZero() {
		conds = append(conds, "begin_time < ?")
		args = append(args, f.Until.Unix())
	}
	switch f.DMARC {
	case DMARCAllPass:
		conds = append(conds, "failed_records = 0")
	case DMARCAllFail:
		conds = append(conds, "failed_records > 0 AND pass_records + partial_records = 0")
	case DMARCMixed:
		conds = append(conds, "failed_records > 0 AND pass_records + partial_records > 0")
	}
	switch f.Status {
	case StatusPassed:
		conds = append(conds, "failed_records = 0 AND partial_records = 0")
	case StatusFailed:
		conds = append(conds, "failed_records > 0")
	case StatusOther:
		conds = append(conds, "failed_records = 0 AND partial_records > 0")
	}
	rec, recArgs := f.recordConds()
	args = append(args, recArgs...)
	if len(rec) > 0 {
		conds = append(conds, "EXISTS (SELECT 1 FROM aggregate_records r WHERE r.report = aggregate_reports.id AND "+
			strings.Join(rec, " AND ")+")")
	}
	if len(conds) == 0 {
		return "", nil
	}
	return " WHERE " + strings.Join(conds, " AND "), args
}

// placeholders is n comma-separated placeholders, for an IN list.
func placeholders(n int) string { return strings.TrimSuffix(strings.Repeat("?,", n), ",") }

// recordConds are the conditions of f's source fields on a record r.
func (f *ReportFilter) recordConds() ([]string, []any) {
	var conds []string
	var args []any
	add := func(column string, value any) {
		conds = append(conds, "r."+column+" = ?")
		args = append(args, value)
	}
	if f.Class != "" {
		add("source_class", f.Class)
	}
	if f.ASN != nil {
		add("source_asn", int64(*f.ASN))
	}
	if f.Name != nil {
		add("source_name", *f.Name)
	}
	if f.IP != "" {
		add("source_ip", f.IP)
	}
	return conds, args
}

// Reports returns the reports f selects in the order sort (a ReportSorts
// name; newest first when empty), from offset, at most limit, with the
// number f selects in all.
func (a *Archive) Reports(ctx context.Context, f ReportFilter, sort string, desc bool, offset, limit int) ([]ReportRow, int, error) {
	where, args := f.where()
	var total int
	if err := a.h().r.QueryRowContext(ctx, "SELECT count(*) FROM aggregate_reports"+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("archive: reports: %w", err)
	}
	column, ok := ReportSorts[sort]
	if !ok {
		column, desc = "begin_time", true
	}
	dir := " ASC"
	if desc {
		dir = " DESC"
	}
	q := "SELECT " + reportColumns + " FROM aggregate_reports" + where + " ORDER BY " + column + dir + ", id" + dir + " LIMIT ? OFFSET ?"
	rows, err := a.h().r.QueryContext(ctx, q, append(args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("archive: reports: %w", err)
	}
	defer rows.Close()
	out := []ReportRow{}
	for rows.Next() {
		var r ReportRow
		if err := scanReportRow(rows, &r); err != nil {
			return nil, 0, fmt.Errorf("archive: reports: %w", err)
		}
		out = append(out, r)
	}
	return out, total, rows.Err()
}

// Distinct returns the distinct domain or reporter labels of the
// aggregate reports, sorted: the choices of the explorer's filters.
func (a *Archive) Distinct(ctx context.Context, column string) ([]string, error) {
	if column != "domain" && column != "reporter" {
		return nil, fmt.Errorf("archive: no filter on %q", column)
	}
	rows, err := a.h().r.QueryContext(ctx, "SELECT DISTINCT "+column+" FROM aggregate_reports ORDER BY 1")
	if err != nil {
		return nil, fmt.Errorf("archive: %ss: %w", column, err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var v string
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, rows.Err()
}

// ReportDetail is an aggregate report with all it says and every record
// kept.
type ReportDetail struct {
	ReportRow
	Email            string            `json:"email"`
	ExtraContactInfo string            `json:"extra_contact_info,omitempty"`
	Errors           []string          `json:"errors,omitempty"`
	Generator        string            `json:"generator,omitempty"`
	Version          string            `json:"version,omitempty"`
	Namespace        string            `json:"namespace,omitempty"`
	Published        PolicyPublished   `json:"policy_published"`
	Extensions       []json.RawMessage `json:"extensions,omitempty"`
	RecordsKept      int               `json:"records_kept"`
	InvalidRecords   int               `json:"invalid_records"`
	Source           string            `json:"source"`
	Input            string            `json:"input"`
	HasRaw           bool              `json:"has_raw"`
	Rows             []RecordRow       `json:"records_detail"`
}

// PolicyPublished is the DMARC policy as the reporter saw it.
type PolicyPublished struct {
	Domain          string `json:"domain"`
	ADKIM           string `json:"adkim,omitempty"`
	ASPF            string `json:"aspf,omitempty"`
	P               string `json:"p"`
	SP              string `json:"sp,omitempty"`
	NP              string `json:"np,omitempty"`
	Pct             *int   `json:"pct,omitempty"`
	FO              string `json:"fo,omitempty"`
	Testing         string `json:"testing,omitempty"`
	DiscoveryMethod string `json:"discovery_method,omitempty"`
}

// RecordRow is a record of a report with its every DKIM and SPF result
// and the identity of its source at ingest.
type RecordRow struct {
	N            int               `json:"n"`
	SourceIP     string            `json:"source_ip"`
	Count        uint64            `json:"count"`
	Disposition  string            `json:"disposition"`
	DKIM         string            `json:"dkim"` // policy-evaluated (aligned)
	SPF          string            `json:"spf"`  // policy-evaluated (aligned)
	DMARC        string            `json:"dmarc"`
	Status       string            `json:"status"` // RecordPassed, RecordPartial or RecordFailed
	Reasons      []report.Reason   `json:"reasons,omitempty"`
	HeaderFrom   string            `json:"header_from"`
	EnvelopeFrom string            `json:"envelope_from,omitempty"`
	EnvelopeTo   string            `json:"envelope_to,omitempty"`
	Problem      string            `json:"problem,omitempty"`
	Source       RecordSource      `json:"source"`
	DKIMResults  []report.DKIMAuth `json:"dkim_results"`
	SPFResults   []report.SPFAuth  `json:"spf_results"`
}

// RecordSource is the identity of a record's source, as stored at ingest.
type RecordSource struct {
	ASN         uint32 `json:"asn,omitempty"`
	Org         string `json:"org,omitempty"`
	Country     string `json:"country,omitempty"`
	Name        string `json:"name,omitempty"`
	Class       string `json:"class"`
	ClassReason string `json:"class_reason,omitempty"`
}

// ErrNotFound is returned for a report the archive does not have.
var ErrNotFound = errors.New("no such report in the archive")

// Report returns an aggregate report with all its records kept.
func (a *Archive) Report(ctx context.Context, id int64) (*ReportDetail, error) {
	d := &ReportDetail{}
	var errs, exts string
	var pct sql.NullInt64
	row := a.h().r.QueryRowContext(ctx, "SELECT "+reportColumns+`, email, extra_contact_info, errors, generator, version,
		namespace, policy_domain, adkim, aspf, sp, np, pct, fo, testing, discovery_method, extensions, records_kept,
		invalid_records, source, input, raw IS NOT NULL FROM aggregate_reports WHERE id = ?`, id)
	err := scanReportRow(scanAfter{row, []any{&d.Email, &d.ExtraContactInfo, &errs, &d.Generator, &d.Version,
		&d.Namespace, &d.Published.Domain, &d.Published.ADKIM, &d.Published.ASPF, &d.Published.SP, &d.Published.NP, &pct,
		&d.Published.FO, &d.Published.Testing, &d.Published.DiscoveryMethod, &exts, &d.RecordsKept, &d.InvalidRecords,
		&d.Source, &d.Input, &d.HasRaw}}, &d.ReportRow)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("archive: report %d: %w", id, err)
	}
	d.Published.P = d.Policy
	if pct.Valid {
		p := int(pct.Int64)
		d.Published.Pct = &p
	}
	_ = json.Unmarshal([]byte(errs), &d.Errors) // written by jsonText
	_ = json.Unmarshal([]byte(exts), &d.Extensions)
	if d.Rows, err = a.records(ctx, id, d.RecordsKept); err != nil {
		return nil, fmt.Errorf("archive: report %d: %w", id, err)
	}
	return d, nil
}

// scanAfter scans a row into the report columns and then into more.
type scanAfter struct {
	row  *sql.Row
	more []any
}

func (s scanAfter) Scan(dest ...any) error { return s.row.Scan(append(dest, s.more...)...) }

// records reads the records of a report with their DKIM and SPF results:
// three queries whatever the number of records.
func (a *Archive) records(ctx context.Context, id int64, n int) ([]RecordRow, error) {
	out := make([]RecordRow, 0, n)
	rows, err := a.h().r.QueryContext(ctx, `SELECT n, source_ip, count, disposition, dkim, spf, dmarc, reasons, header_from,
		envelope_from, envelope_to, problem, source_asn, source_org, source_country, source_name, source_class, class_reason
		FROM aggregate_records WHERE report = ? ORDER BY n`, id)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	at := map[int]int{}
	for rows.Next() {
		var r RecordRow
		var reasons string
		var asn int64
		if err := rows.Scan(&r.N, &r.SourceIP, &r.Count, &r.Disposition, &r.DKIM, &r.SPF, &r.DMARC, &reasons, &r.HeaderFrom,
			&r.EnvelopeFrom, &r.EnvelopeTo, &r.Problem, &asn, &r.Source.Org, &r.Source.Country, &r.Source.Name,
			&r.Source.Class, &r.Source.ClassReason); err != nil {
			return nil, err
		}
		r.Source.ASN = uint32(asn)
		_ = json.Unmarshal([]byte(reasons), &r.Reasons)
		r.Status = RecordStatus(r.DKIM, r.SPF, r.DMARC)
		r.DKIMResults, r.SPFResults = []report.DKIMAuth{}, []report.SPFAuth{}
		at[r.N] = len(out)
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	dkim, err := a.h().r.QueryContext(ctx, "SELECT n, domain, selector, result, human_result FROM record_dkim WHERE report = ? ORDER BY n, i", id)
	if err != nil {
		return nil, err
	}
	defer dkim.Close()
	for dkim.Next() {
		var n int
		var d report.DKIMAuth
		if err := dkim.Scan(&n, &d.Domain, &d.Selector, &d.Result, &d.HumanResult); err != nil {
			return nil, err
		}
		if i, ok := at[n]; ok {
			out[i].DKIMResults = append(out[i].DKIMResults, d)
		}
	}
	if err := dkim.Err(); err != nil {
		return nil, err
	}
	spf, err := a.h().r.QueryContext(ctx, "SELECT n, domain, scope, result, human_result FROM record_spf WHERE report = ? ORDER BY n, i", id)
	if err != nil {
		return nil, err
	}
	defer spf.Close()
	for spf.Next() {
		var n int
		var p report.SPFAuth
		if err := spf.Scan(&n, &p.Domain, &p.Scope, &p.Result, &p.HumanResult); err != nil {
			return nil, err
		}
		if i, ok := at[n]; ok {
			out[i].SPFResults = append(out[i].SPFResults, p)
		}
	}
	return out, spf.Err()
}

// RawAggregate returns an aggregate report as received (its XML); ok is
// false when the archive did not keep it.
func (a *Archive) RawAggregate(ctx context.Context, id int64) (raw []byte, ok bool, err error) {
	return a.rawByID(ctx, "aggregate_reports", id)
}

// rawByID reads the raw bytes of a report of table (aggregate_reports or
// tls_reports) by its number.
func (a *Archive) rawByID(ctx context.Context, table string, id int64) (raw []byte, ok bool, err error) {
	var z []byte
	err = a.h().r.QueryRowContext(ctx, "SELECT raw FROM "+table+" WHERE id = ?", id).Scan(&z)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, false, ErrNotFound
	}
	if err != nil {
		return nil, false, fmt.Errorf("archive: report %d: %w", id, err)
	}
	if z == nil {
		return nil, false, nil
	}
	if raw, err = gunzip(z); err != nil {
		return nil, false, fmt.Errorf("archive: report %d: %w", id, err)
	}
	return raw, true, nil
}
