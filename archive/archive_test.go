package archive

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/report"
)

func openTest(t *testing.T, dir string) *Archive {
	t.Helper()
	a, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// TestMigrations: an archive at every earlier schema version, holding
// data, is brought to the latest; a newer archive is refused.
// schema1Data is a report as schema 1 holds it.
const schema1Data = `
INSERT INTO report_identities VALUES ('r1', 1700000000);
INSERT INTO aggregate_reports (id, identity, domain, reporter, org_name, email, extra_contact_info, report_id, begin_time, end_time,
	errors, generator, version, namespace, policy_domain, adkim, aspf, p, sp, np, pct, fo, testing, discovery_method, extensions,
	records, records_kept, invalid_records, messages, failed_messages, source, input, received, raw)
VALUES (1, 'r1', 'example.com', 'google.com', 'google.com', '', '', 'id1', 1700000000, 1700086400, '[]', '', '', '',
	'example.com', 'r', 'r', 'none', '', '', NULL, '', '', '', '[]', 4, 4, 1, 7, 3, 'dir', '/in/r1', 1700090000, NULL);
INSERT INTO aggregate_records (report, n, source_ip, count, disposition, dkim, spf, dmarc, reasons, header_from, envelope_from,
	envelope_to, problem, extensions, source_asn, source_org, source_country, source_name, source_class, class_reason) VALUES
	(1, 0, '192.0.2.1', 2, 'none', 'pass', 'pass', 'pass', '[]', 'example.com', '', '', '', '[]', 0, '', '', '', 'authorized', ''),
	(1, 1, '192.0.2.2', 2, 'none', 'pass', 'fail', 'pass', '[]', 'example.com', '', '', '', '[]', 0, '', '', '', 'forwarded', ''),
	(1, 2, '', 3, 'none', 'fail', 'fail', 'fail', '[]', 'example.com', '', '', 'source_ip missing', '[]', 0, '', '', '', 'unknown', ''),
	(1, 3, '192.0.2.4', 0, 'none', 'fail', 'fail', 'fail', '[]', 'example.com', '', '', 'count missing', '[]', 0, '', '', '', 'unknown', '');
`

func TestMigrations(t *testing.T) {
	for from := 0; from < SchemaVersion(); from++ {
		dir := t.TempDir()
		a, err := openPath(filepath.Join(dir, FileName))
		if err != nil {
			t.Fatal(err)
		}
		if err := a.migrate(context.Background(), from); err != nil {
			t.Fatalf("to version %d: %v", from, err)
		}
		if from >= 1 {
			// Data as schema 1 holds it: a report with a passing, a
			// partial and a failing record, and its identity.
			if _, err := a.h().w.Exec(schema1Data); err != nil {
				t.Fatalf("version %d: %v", from, err)
			}
		}
		a.Close()

		a = openTest(t, dir)
		var version int
		a.h().r.QueryRow("PRAGMA user_version").Scan(&version)
		if version != SchemaVersion() {
			t.Errorf("from %d: schema version %d, want %d", from, version, SchemaVersion())
		}
		var check string
		if err := a.h().r.QueryRow("PRAGMA integrity_check").Scan(&check); err != nil || check != "ok" {
			t.Errorf("from %d: integrity check %q %v", from, check, err)
		}
		if from >= 1 {
			if known, _ := a.Known("r1"); !known {
				t.Errorf("from %d: a report identity was lost", from)
			}
			// Migration 2 counted the records of reports written before it.
			var pass, partial, failed int
			if err := a.h().r.QueryRow("SELECT pass_records, partial_records, failed_records FROM aggregate_reports").Scan(&pass, &partial, &failed); from < 2 && (err != nil || pass != 1 || partial != 1 || failed != 1) {
				t.Errorf("from %d: records by status %d/%d/%d (%v), want 1/1/1", from, pass, partial, failed, err)
			}
		}
		a.Close()
	}

	// A reading command opens an archive of this version only, and
	// neither creates nor upgrades one.
	old := t.TempDir()
	a1, err := openPath(filepath.Join(old, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if err := a1.migrate(context.Background(), 1); err != nil {
		t.Fatal(err)
	}
	a1.Close()
	if _, err := OpenExisting(old); err == nil || !strings.Contains(err.Error(), "schema version 1") {
		t.Errorf("OpenExisting on schema 1: %v", err)
	}
	if _, err := OpenExisting(t.TempDir()); err == nil || !strings.Contains(err.Error(), "no archive") {
		t.Errorf("OpenExisting on an empty directory: %v", err)
	}
	ok := t.TempDir()
	openTest(t, ok).Close()
	if a, err := OpenExisting(ok); err != nil {
		t.Errorf("OpenExisting on this version: %v", err)
	} else {
		a.Close()
	}

	// Opening twice changes nothing; a newer schema is refused.
	dir := t.TempDir()
	openTest(t, dir).Close()
	a := openTest(t, dir)
	if _, err := a.h().w.Exec("PRAGMA user_version = 999"); err != nil {
		t.Fatal(err)
	}
	a.Close()
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "newer than this build") {
		t.Fatalf("an archive of a newer version: %v", err)
	}
}

func testBatch(id string) *Batch {
	pct := 100
	rec := &report.Record{SourceIP: netip.MustParseAddr("192.0.2.1"), Count: 3, Disposition: report.DispositionNone,
		DKIM: report.DMARCPass, SPF: report.DMARCFail, HeaderFrom: "example.com",
		DKIMResults: []report.DKIMAuth{{Domain: "example.com", Selector: "s1", Result: "pass"}, {Domain: "esp.test", Selector: "x", Result: "pass"}},
		SPFResults:  []report.SPFAuth{{Domain: "bounce.esp.test", Scope: "mfrom", Result: "pass"}}}
	bad := &report.Record{Problem: "source_ip missing"}
	return &Batch{
		Inputs:     []Input{{Path: "/in/" + id, Source: "src", Mark: "1:2", Read: time.Unix(1700000000, 0)}},
		Identities: []Identity{{ID: id, FirstSeen: time.Unix(1700000000, 0)}},
		Aggregates: []*Aggregate{{Identity: id, Domain: "example.com", Reporter: "google.com",
			Header: &report.Aggregate{Metadata: report.Metadata{OrgName: "google.com", ReportID: id,
				Begin: time.Unix(1699920000, 0), End: time.Unix(1700006399, 0)},
				Policy: report.PolicyPublished{Domain: "example.com", P: "reject", Pct: &pct}},
			Records: []Record{{Record: rec, DMARC: "pass", Source: SourceIdentity{ASN: 15169, Org: "GOOGLE", Class: "authorized"}},
				{Record: bad, DMARC: "fail"}},
			RecordCount: 2, InvalidRecords: 1, Messages: 3, Source: "src", Input: "/in/" + id, Received: time.Unix(1700000000, 0)}},
		Totals: map[string]map[string]uint64{"dmarc_reports_total": {"example.com" + LabelSep + "google.com": 1}},
	}
}

// TestApply: a batch is written whole, counters add up, and a batch that
// fails halfway leaves nothing behind.
func TestApply(t *testing.T) {
	a := openTest(t, t.TempDir())
	if err := a.Apply(testBatch("r1")); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(testBatch("r2")); err != nil {
		t.Fatal(err)
	}
	for table, want := range map[string]int{"aggregate_reports": 2, "aggregate_records": 4, "record_dkim": 4, "record_spf": 2,
		"inputs": 2, "report_identities": 2} {
		var n int
		a.h().r.QueryRow("SELECT count(*) FROM " + table).Scan(&n)
		if n != want {
			t.Errorf("%s: %d rows, want %d", table, n, want)
		}
	}
	var got []string
	a.Totals(func(family, labels string, v uint64) {
		got = append(got, family+" "+strings.ReplaceAll(labels, LabelSep, ",")+" "+strings.Repeat("I", int(v)))
	})
	if want := []string{"dmarc_reports_total example.com,google.com II"}; !slices.Equal(got, want) {
		t.Errorf("totals %q, want %q", got, want)
	}

	// A batch that fails halfway (its second record, as a full disk
	// would) writes nothing: not its report, its totals or its mark.
	if _, err := a.h().w.Exec("CREATE TRIGGER fail BEFORE INSERT ON aggregate_records WHEN NEW.n = 1 BEGIN SELECT RAISE(ABORT, 'disk full'); END"); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(testBatch("r3")); err == nil || !strings.Contains(err.Error(), "disk full") {
		t.Fatalf("a failing batch: %v", err)
	}
	a.h().w.Exec("DROP TRIGGER fail")
	if _, ok, _ := a.Input("/in/r3"); ok {
		t.Error("the mark of a failed batch was written")
	}
	if known, _ := a.Known("r3"); known {
		t.Error("the identity of a failed batch was written")
	}
	var total, reports int
	a.h().r.QueryRow("SELECT value FROM totals").Scan(&total)
	a.h().r.QueryRow("SELECT count(*) FROM aggregate_reports").Scan(&reports)
	if total != 2 || reports != 2 {
		t.Errorf("totals %d and %d reports after a failed batch, want 2 and 2", total, reports)
	}

	// A report whose identity is known already, counted meanwhile by
	// another exporter sharing the archive, writes nothing.
	if err := a.Apply(testBatch("r2")); !errors.Is(err, ErrCountedElsewhere) {
		t.Errorf("a batch of a report known already: %v", err)
	}
	a.h().r.QueryRow("SELECT value FROM totals").Scan(&total)
	if total != 2 {
		t.Errorf("a refused batch wrote its totals: %d", total)
	}

	// A report counted again once its identity was forgotten replaces
	// its earlier copy.
	if _, err := a.h().w.Exec("DELETE FROM report_identities WHERE identity = 'r1'"); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(testBatch("r1")); err != nil {
		t.Fatal(err)
	}
	a.h().r.QueryRow("SELECT count(*) FROM aggregate_reports").Scan(&reports)
	if reports != 2 {
		t.Errorf("%d reports after one was counted again, want 2", reports)
	}

	// Deleting a report deletes its records and their results.
	if _, err := a.h().w.Exec("DELETE FROM aggregate_reports WHERE identity = 'r1'"); err != nil {
		t.Fatal(err)
	}
	var n int
	a.h().r.QueryRow("SELECT count(*) FROM record_dkim").Scan(&n)
	if n != 2 {
		t.Errorf("%d DKIM results left after deleting one of two reports, want 2", n)
	}
}

// TestReadOnlyDirectory: an archive that cannot be created says where.
func TestReadOnlyDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(dir, nil, 0o644)
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), dir) {
		t.Fatalf("archive under a file: %v", err)
	}
}

// TestExpireIdentities: identities first seen before the cutoff go, and
// the oldest beyond the maximum; the rest stay.
func TestExpireIdentities(t *testing.T) {
	a := openTest(t, t.TempDir())
	b := &Batch{}
	for i := range 10 {
		b.Identities = append(b.Identities, Identity{ID: fmt.Sprint("id", i), FirstSeen: time.Unix(int64(1000+i), 0)})
	}
	if err := a.Apply(b); err != nil {
		t.Fatal(err)
	}
	// id0 and id1 are past the cutoff; of the eight left, the five newest stay.
	n, err := a.ExpireIdentities(time.Unix(1002, 0), 5)
	if err != nil || n != 5 {
		t.Fatalf("expired %d (%v), want 5", n, err)
	}
	for i := range 10 {
		known, _ := a.Known(fmt.Sprint("id", i))
		if want := i >= 5; known != want {
			t.Errorf("id%d known %v, want %v", i, known, want)
		}
	}
}

// TestReportNumbersGrow: a report's number is never given again, even
// when the newest report was deleted.
func TestReportNumbersGrow(t *testing.T) {
	a := openTest(t, t.TempDir())
	defer a.Close()
	agg := func(id string) *Batch {
		return &Batch{Aggregates: []*Aggregate{{Identity: id, Domain: "example.com", Reporter: "google.com",
			Header:   &report.Aggregate{Metadata: report.Metadata{ReportID: id, Begin: time.Unix(1700000000, 0), End: time.Unix(1700086399, 0)}},
			Received: time.Unix(1700090000, 0)}}}
	}
	for _, id := range []string{"a", "b"} {
		if err := a.Apply(agg(id)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.h().w.Exec("DELETE FROM aggregate_reports WHERE identity = 'b'"); err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(agg("c")); err != nil {
		t.Fatal(err)
	}
	var id int64
	a.h().r.QueryRow("SELECT id FROM aggregate_reports WHERE identity = 'c'").Scan(&id)
	if id != 3 {
		t.Errorf("after deleting report 2, the next report is number %d, want 3", id)
	}
}
