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

// TLSRow is an SMTP TLS report as the list shows it.
type TLSRow struct {
	ID         int64     `json:"id"`
	Reporter   string    `json:"reporter"`
	OrgName    string    `json:"org_name"`
	ReportID   string    `json:"report_id"`
	Begin      time.Time `json:"begin"`
	End        time.Time `json:"end"`
	Received   time.Time `json:"received"`
	Domains    []string  `json:"domains"` // the monitored policy domains
	Successful uint64    `json:"successful_sessions"`
	Failed     uint64    `json:"failed_sessions"`
}

// TLSDetail is an SMTP TLS report with its policies and their failures.
type TLSDetail struct {
	TLSRow
	ContactInfo string                   `json:"contact_info,omitempty"`
	Source      string                   `json:"source"`
	Input       string                   `json:"input"`
	HasRaw      bool                     `json:"has_raw"`
	Policies    []report.TLSPolicyResult `json:"policies"`
}

// TLSReports lists the SMTP TLS reports whose range overlaps the filter's
// period and that have a policy of one of its domains, newest first.
func (a *Archive) TLSReports(ctx context.Context, f ReportFilter, offset, limit int) ([]TLSRow, int, error) {
	var conds []string
	var args []any
	if !f.From.IsZero() {
		conds = append(conds, "t.end_time > ?")
		args = append(args, f.From.Unix())
	}
	if !f.Until.IsZero() {
		conds = append(conds, "t.begin_time < ?")
		args = append(args, f.Until.Unix())
	}
	if len(f.Reporters) > 0 {
		conds = append(conds, "t.reporter IN ("+placeholders(len(f.Reporters))+")")
		for _, r := range f.Reporters {
			args = append(args, r)
		}
	}
	if len(f.Domains) > 0 {
		conds = append(conds, "EXISTS (SELECT 1 FROM tls_policies p WHERE p.report = t.id AND p.domain IN ("+
			placeholders(len(f.Domains))+"))")
		for _, d := range f.Domains {
			args = append(args, d)
		}
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	var total int
	if err := a.h().r.QueryRowContext(ctx, "SELECT count(*) FROM tls_reports t"+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("archive: TLS reports: %w", err)
	}
	rows, err := a.h().r.QueryContext(ctx, `SELECT t.id, t.reporter, t.org_name, t.report_id, t.begin_time, t.end_time, t.received,
		(SELECT group_concat(DISTINCT p.domain) FROM tls_policies p WHERE p.report = t.id AND p.domain <> ''),
		(SELECT coalesce(sum(p.successful), 0) FROM tls_policies p WHERE p.report = t.id),
		(SELECT coalesce(sum(p.failed), 0) FROM tls_policies p WHERE p.report = t.id)
		FROM tls_reports t`+where+" ORDER BY t.begin_time DESC, t.id DESC LIMIT ? OFFSET ?", append(args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("archive: TLS reports: %w", err)
	}
	defer rows.Close()
	out := []TLSRow{}
	for rows.Next() {
		var r TLSRow
		var domains sql.NullString
		if err := scanTLSRow(rows, &r, &domains); err != nil {
			return nil, 0, fmt.Errorf("archive: TLS reports: %w", err)
		}
		out = append(out, r)
	}
	return out, total, rows.Err()
}

func scanTLSRow(sc interface{ Scan(...any) error }, r *TLSRow, domains *sql.NullString, more ...any) error {
	var begin, end, received int64
	if err := sc.Scan(append([]any{&r.ID, &r.Reporter, &r.OrgName, &r.ReportID, &begin, &end, &received, domains,
		&r.Successful, &r.Failed}, more...)...); err != nil {
		return err
	}
	r.Begin, r.End, r.Received = time.Unix(begin, 0).UTC(), time.Unix(end, 0).UTC(), time.Unix(received, 0).UTC()
	r.Domains = []string{}
	if domains.String != "" {
		r.Domains = strings.Split(domains.String, ",")
	}
	return nil
}

// TLSReport returns an SMTP TLS report with its policies and failures.
func (a *Archive) TLSReport(ctx context.Context, id int64) (*TLSDetail, error) {
	d := &TLSDetail{}
	var domains sql.NullString
	err := scanTLSRow(a.h().r.QueryRowContext(ctx, `SELECT t.id, t.reporter, t.org_name, t.report_id, t.begin_time, t.end_time, t.received,
		(SELECT group_concat(DISTINCT p.domain) FROM tls_policies p WHERE p.report = t.id AND p.domain <> ''),
		(SELECT coalesce(sum(p.successful), 0) FROM tls_policies p WHERE p.report = t.id),
		(SELECT coalesce(sum(p.failed), 0) FROM tls_policies p WHERE p.report = t.id),
		t.contact_info, t.source, t.input, t.raw IS NOT NULL FROM tls_reports t WHERE t.id = ?`, id),
		&d.TLSRow, &domains, &d.ContactInfo, &d.Source, &d.Input, &d.HasRaw)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("archive: TLS report %d: %w", id, err)
	}
	rows, err := a.h().r.QueryContext(ctx, `SELECT policy_type, policy_strings, policy_domain, mx_hosts, successful, failed
		FROM tls_policies WHERE report = ? ORDER BY n`, id)
	if err != nil {
		return nil, fmt.Errorf("archive: TLS report %d: %w", id, err)
	}
	defer rows.Close()
	for rows.Next() {
		var p report.TLSPolicyResult
		var strs, mx string
		if err := rows.Scan(&p.Type, &strs, &p.Domain, &mx, &p.Successful, &p.Failed); err != nil {
			return nil, fmt.Errorf("archive: TLS report %d: %w", id, err)
		}
		_ = json.Unmarshal([]byte(strs), &p.Strings)
		_ = json.Unmarshal([]byte(mx), &p.MXHosts)
		d.Policies = append(d.Policies, p)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	fails, err := a.h().r.QueryContext(ctx, `SELECT policy, result_type, sending_mta_ip, receiving_mx_hostname, receiving_mx_helo,
		receiving_ip, failed_sessions, additional_information, failure_reason_code FROM tls_failures WHERE report = ? ORDER BY policy, i`, id)
	if err != nil {
		return nil, fmt.Errorf("archive: TLS report %d: %w", id, err)
	}
	defer fails.Close()
	for fails.Next() {
		var n int
		var f report.TLSFailure
		if err := fails.Scan(&n, &f.ResultType, &f.SendingMTAIP, &f.ReceivingMXHostname, &f.ReceivingMXHelo, &f.ReceivingIP,
			&f.FailedSessions, &f.AdditionalInfo, &f.FailureReasonCode); err != nil {
			return nil, fmt.Errorf("archive: TLS report %d: %w", id, err)
		}
		if n >= 0 && n < len(d.Policies) {
			d.Policies[n].Failures = append(d.Policies[n].Failures, f)
		}
	}
	return d, fails.Err()
}

// RawTLS returns an SMTP TLS report as received (its JSON); ok is false
// when the archive did not keep it.
func (a *Archive) RawTLS(ctx context.Context, id int64) (raw []byte, ok bool, err error) {
	return a.rawByID(ctx, "tls_reports", id)
}

// FailureRow is a failure report as the list shows it; Sample is its
// redacted content, nil unless failure_samples kept it.
type FailureRow struct {
	ID             int64                 `json:"id"`
	Domain         string                `json:"domain"`
	Reporter       string                `json:"reporter"`
	AuthFailure    string                `json:"auth_failure"`
	DeliveryResult string                `json:"delivery_result"`
	Received       time.Time             `json:"received"`
	Sample         *report.FailureReport `json:"sample,omitempty"`
}

// FailureReports lists the failure reports received in the filter's
// period for its domains, newest first, with their samples.
func (a *Archive) FailureReports(ctx context.Context, f ReportFilter, offset, limit int) ([]FailureRow, int, error) {
	var conds []string
	var args []any
	if !f.From.IsZero() {
		conds = append(conds, "received >= ?")
		args = append(args, f.From.Unix())
	}
	if !f.Until.IsZero() {
		conds = append(conds, "received < ?")
		args = append(args, f.Until.Unix())
	}
	for _, set := range []struct {
		column string
		values []string
	}{{"domain", f.Domains}, {"reporter", f.Reporters}} {
		if len(set.values) > 0 {
			conds = append(conds, set.column+" IN ("+placeholders(len(set.values))+")")
			for _, v := range set.values {
				args = append(args, v)
			}
		}
	}
	where := ""
	if len(conds) > 0 {
		where = " WHERE " + strings.Join(conds, " AND ")
	}
	var total int
	if err := a.h().r.QueryRowContext(ctx, "SELECT count(*) FROM failure_reports"+where, args...).Scan(&total); err != nil {
		return nil, 0, fmt.Errorf("archive: failure reports: %w", err)
	}
	rows, err := a.h().r.QueryContext(ctx, `SELECT id, domain, reporter, auth_failure, delivery_result, received, redacted
		FROM failure_reports`+where+" ORDER BY received DESC, id DESC LIMIT ? OFFSET ?", append(args, limit, offset)...)
	if err != nil {
		return nil, 0, fmt.Errorf("archive: failure reports: %w", err)
	}
	defer rows.Close()
	out := []FailureRow{}
	for rows.Next() {
		r, err := scanFailure(rows)
		if err != nil {
			return nil, 0, fmt.Errorf("archive: failure reports: %w", err)
		}
		out = append(out, *r)
	}
	return out, total, rows.Err()
}

func scanFailure(sc interface{ Scan(...any) error }) (*FailureRow, error) {
	var r FailureRow
	var received int64
	var redacted sql.NullString
	if err := sc.Scan(&r.ID, &r.Domain, &r.Reporter, &r.AuthFailure, &r.DeliveryResult, &received, &redacted); err != nil {
		return nil, err
	}
	r.Received = time.Unix(received, 0).UTC()
	if redacted.Valid {
		r.Sample = &report.FailureReport{}
		if err := json.Unmarshal([]byte(redacted.String), r.Sample); err != nil {
			return nil, err
		}
	}
	return &r, nil
}

// FailureReport returns one failure report.
func (a *Archive) FailureReport(ctx context.Context, id int64) (*FailureRow, error) {
	r, err := scanFailure(a.h().r.QueryRowContext(ctx, `SELECT id, domain, reporter, auth_failure, delivery_result, received, redacted
		FROM failure_reports WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("archive: failure report %d: %w", id, err)
	}
	return r, nil
}
