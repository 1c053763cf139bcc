package archive

import (
	"bytes"
	"compress/gzip"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// Totals calls fn for every counter series: its family, its label values
// joined by LabelSep, and its value.
func (a *Archive) Totals(fn func(family, labels string, value uint64)) error {
	rows, err := a.h().r.Query("SELECT family, labels, value FROM totals")
	if err != nil {
		return fmt.Errorf("archive: totals: %w", err)
	}
	defer rows.Close()
	var family, labels sql.RawBytes
	var v int64
	names := map[string]string{} // one string per family name
	for rows.Next() {
		if err := rows.Scan(&family, &labels, &v); err != nil {
			return fmt.Errorf("archive: totals: %w", err)
		}
		name, ok := names[string(family)]
		if !ok {
			name = string(family)
			names[name] = name
		}
		fn(name, string(labels), uint64(v))
	}
	return rows.Err()
}

// Reporters calls fn for the watchdog's view of every reporter.
func (a *Archive) Reporters(fn func(Reporter)) error {
	rows, err := a.h().r.Query("SELECT domain, reporter, last_end, last_received, ends FROM reporters")
	if err != nil {
		return fmt.Errorf("archive: reporters: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var r Reporter
		var ends string
		if err := rows.Scan(&r.Domain, &r.Reporter, &r.LastEnd, &r.LastReceived, &ends); err != nil {
			return fmt.Errorf("archive: reporters: %w", err)
		}
		if err := json.Unmarshal([]byte(ends), &r.Ends); err != nil {
			return fmt.Errorf("archive: reporter %s of %s: ends: %w", r.Reporter, r.Domain, err)
		}
		fn(r)
	}
	return rows.Err()
}

// Input returns the mark of an input read, and false when it was not.
func (a *Archive) Input(path string) (Input, bool, error) {
	in := Input{Path: path}
	var read int64
	err := a.h().inputStmt.QueryRow(path).Scan(&in.Source, &in.Mark, &in.Refused, &in.Reason, &in.Error, &read)
	if errors.Is(err, sql.ErrNoRows) {
		return Input{}, false, nil
	}
	if err != nil {
		return Input{}, false, fmt.Errorf("archive: input %s: %w", path, err)
	}
	in.Read = time.Unix(read, 0)
	return in, true, nil
}

// InputsUnder lists the paths of the inputs read whose path starts with
// prefix.
func (a *Archive) InputsUnder(prefix string) ([]string, error) {
	// A range on the primary key, not LIKE, which treats _ and % as patterns.
	rows, err := a.h().r.Query("SELECT path FROM inputs WHERE path >= ? AND path < ?", prefix, prefix+"\U0010FFFF")
	if err != nil {
		return nil, fmt.Errorf("archive: inputs: %w", err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, rows.Err()
}

// Known reports whether a report identity is remembered.
func (a *Archive) Known(identity string) (bool, error) {
	var one int
	err := a.h().knownStmt.QueryRow(identity).Scan(&one)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("archive: report identity: %w", err)
	}
	return true, nil
}

// Identities counts the report identities remembered.
func (a *Archive) Identities() (int, error) {
	var n int
	err := a.h().r.QueryRow("SELECT count(*) FROM report_identities").Scan(&n)
	return n, err
}

// ExpireIdentities forgets the report identities first seen before
// cutoff, and the oldest beyond max, and returns how many it forgot.
func (a *Archive) ExpireIdentities(cutoff time.Time, max int) (int64, error) {
	res, err := a.h().w.Exec("DELETE FROM report_identities WHERE first_seen < ?", cutoff.Unix())
	if err != nil {
		return 0, fmt.Errorf("archive: expire report identities: %w", err)
	}
	n, _ := res.RowsAffected()
	var count int
	if err := a.h().w.QueryRow("SELECT count(*) FROM report_identities").Scan(&count); err != nil {
		return n, fmt.Errorf("archive: expire report identities: %w", err)
	}
	if count <= max {
		return n, nil
	}
	res, err = a.h().w.Exec(`DELETE FROM report_identities WHERE identity IN (SELECT identity FROM report_identities
		ORDER BY first_seen LIMIT ?)`, count-max)
	if err != nil {
		return n, fmt.Errorf("archive: expire report identities: %w", err)
	}
	m, _ := res.RowsAffected()
	return n + m, nil
}

// Selectors calls fn for every DKIM selector seen in reports.
func (a *Archive) Selectors(fn func(Selector)) error {
	rows, err := a.h().r.Query("SELECT domain, selector FROM dkim_selectors")
	if err != nil {
		return fmt.Errorf("archive: DKIM selectors: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var s Selector
		if err := rows.Scan(&s.Domain, &s.Selector); err != nil {
			return err
		}
		fn(s)
	}
	return rows.Err()
}

// DNS calls fn for the last observation of every DNS record.
func (a *Archive) DNS(fn func(DNSRecord)) error {
	rows, err := a.h().r.Query("SELECT domain, record, state FROM dns_records")
	if err != nil {
		return fmt.Errorf("archive: DNS records: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var d DNSRecord
		var state string
		if err := rows.Scan(&d.Domain, &d.Record, &state); err != nil {
			return err
		}
		d.State = []byte(state)
		fn(d)
	}
	return rows.Err()
}

// DNSLog calls fn for the changes of every DNS record, oldest first.
func (a *Archive) DNSLog(fn func(DNSChange)) error {
	rows, err := a.h().r.Query("SELECT domain, record, time, texts FROM dns_changes ORDER BY time, rowid")
	if err != nil {
		return fmt.Errorf("archive: DNS changes: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var c DNSChange
		var texts string
		if err := rows.Scan(&c.Domain, &c.Record, &c.Time, &texts); err != nil {
			return err
		}
		if err := json.Unmarshal([]byte(texts), &c.Texts); err != nil {
			return fmt.Errorf("archive: DNS change of %s: %w", c.Domain, err)
		}
		fn(c)
	}
	return rows.Err()
}

// Sample is a redacted failure report kept for the detail view.
type Sample struct {
	Domain, Reporter, Source string
	Received                 time.Time
	Report                   *report.FailureReport
}

// FailureSamples returns the newest n failure reports kept redacted,
// newest first.
func (a *Archive) FailureSamples(n int) ([]Sample, error) {
	rows, err := a.h().r.Query(`SELECT domain, reporter, source, received, redacted FROM failure_reports
		WHERE redacted IS NOT NULL ORDER BY id DESC LIMIT ?`, n)
	if err != nil {
		return nil, fmt.Errorf("archive: failure reports: %w", err)
	}
	defer rows.Close()
	var out []Sample
	for rows.Next() {
		var s Sample
		var received int64
		var redacted string
		if err := rows.Scan(&s.Domain, &s.Reporter, &s.Source, &received, &redacted); err != nil {
			return nil, err
		}
		s.Received = time.Unix(received, 0).UTC()
		s.Report = &report.FailureReport{}
		if err := json.Unmarshal([]byte(redacted), s.Report); err != nil {
			return nil, fmt.Errorf("archive: failure report: %w", err)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// RawReport returns an aggregate or SMTP TLS report as it was received
// (XML or JSON), found by its identity; ok is false when the archive has
// no such report or did not keep its bytes.
func (a *Archive) RawReport(identity string) (raw []byte, ok bool, err error) {
	var z []byte
	err = a.h().r.QueryRow(`SELECT raw FROM aggregate_reports WHERE identity = ?1
		UNION ALL SELECT raw FROM tls_reports WHERE identity = ?1`, identity).Scan(&z)
	if errors.Is(err, sql.ErrNoRows) || err == nil && z == nil {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("archive: report %s: %w", identity, err)
	}
	if raw, err = gunzip(z); err != nil {
		return nil, false, fmt.Errorf("archive: report %s: %w", identity, err)
	}
	return raw, true, nil
}

// gunzip reads a report's raw bytes as stored.
func gunzip(z []byte) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(zr)
}

// Empty reports whether no input was ever read into the archive.
func (a *Archive) Empty() (bool, error) {
	var any bool
	err := a.h().r.QueryRow("SELECT EXISTS (SELECT 1 FROM inputs)").Scan(&any)
	return !any, err
}
