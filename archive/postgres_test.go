package archive

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

func TestPGSQL(t *testing.T) {
	for in, want := range map[string]string{
		"SELECT a FROM t WHERE x = ? AND y = ?":                        "SELECT a FROM t WHERE x = $1 AND y = $2",
		"DELETE FROM t WHERE end_time < ?1 AND received < ?1 LIMIT ?2": "DELETE FROM t WHERE end_time < $1 AND received < $1 LIMIT $2",
		"SELECT '?', \"a?\" FROM t WHERE x = ?":                        "SELECT '?', \"a?\" FROM t WHERE x = $1",
		"SELECT group_concat(DISTINCT p.domain) FROM p":                "SELECT string_agg(DISTINCT p.domain, ',') FROM p",
	} {
		if got := pgSQL(in); got != want {
			t.Errorf("pgSQL(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestPostgresParity does the same writes on an SQLite archive and on a
// PostgreSQL archive (a throwaway cluster of Debian's postgresql) and
// compares what every read gives.
func TestPostgresParity(t *testing.T) {
	pg := testenv.StartPostgres(t)
	backends := map[string]*Archive{"sqlite": openTest(t, t.TempDir())}
	a, err := OpenURL(pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	backends["postgres"] = a

	ctx := context.Background()
	out := map[string]map[string]string{}
	for name, a := range backends {
		got := map[string]string{}
		out[name] = got
		record := func(what string, v any, err error) {
			t.Helper()
			if err != nil {
				t.Errorf("%s: %s: %v", name, what, err)
			}
			b, _ := json.Marshal(v)
			got[what] = string(b)
		}
		for i := range 5 {
			b := testBatch(fmt.Sprintf("r%d", i))
			b.Aggregates[0].Header.Metadata.Begin = time.Unix(1699920000+int64(i)*86400, 0)
			b.Aggregates[0].Header.Metadata.End = time.Unix(1700006399+int64(i)*86400, 0)
			b.Totals["dmarc_messages_total"] = map[string]uint64{"example.com\xffgoogle.com\xffnone": uint64(i + 1)}
			b.Reporters = []Reporter{{Domain: "example.com", Reporter: "google.com", LastEnd: int64(i), Ends: []int64{1, 2}}}
			b.Selectors = []Selector{{Domain: "example.com", Selector: "s1"}}
			b.DNS = []DNSRecord{{Domain: "example.com", Record: "dmarc", State: []byte(`{"present":true}`)}}
			b.DNSLog = []DNSChange{{Domain: "example.com", Record: "dmarc", Time: int64(i), Texts: []string{"v=DMARC1"}}}
			b.Meta = map[string]string{"k": fmt.Sprint(i)}
			b.TLS = []*TLS{{Identity: fmt.Sprintf("t%d", i), Reporter: "google.com", Domains: []string{"example.com"},
				Report: &report.TLSReport{OrganizationName: "Google", ReportID: fmt.Sprint(i), Begin: time.Unix(1700000000, 0), End: time.Unix(1700086399, 0),
					Policies: []report.TLSPolicyResult{{Type: "sts", Domain: "example.com", Successful: 10, Failed: 2,
						Failures: []report.TLSFailure{{ResultType: "certificate-expired", FailedSessions: 2}}}}},
				Source: "src", Input: "/tls", Received: time.Unix(1700090000, 0)}}
			b.Failures = []*Failure{{Identity: fmt.Sprintf("f%d", i), Domain: "example.com", Reporter: "*@google.com",
				AuthFailure: "dmarc", DeliveryResult: "reject", Source: "src", Input: "/f", Received: time.Unix(1700090000, 0),
				Redacted: &report.FailureReport{AuthFailure: "dmarc", SourceIP: netip.MustParseAddr("192.0.2.9")}}}
			if err := a.Apply(b); err != nil {
				t.Fatalf("%s: apply %d: %v", name, i, err)
			}
		}
		totals := map[string]uint64{}
		record("totals", totals, a.Totals(func(f, l string, v uint64) { totals[f+"|"+l] = v }))
		var reporters []Reporter
		record("reporters", &reporters, a.Reporters(func(r Reporter) { reporters = append(reporters, r) }))
		in, ok, err := a.Input("/in/r3")
		record("input", []any{in, ok}, err)
		under, err := a.InputsUnder("/in/")
		record("inputs under", under, err)
		known, err := a.Known("r2")
		record("known", known, err)
		rows, total, err := a.Reports(ctx, ReportFilter{Status: StatusPassed}, "messages", true, 0, 10)
		record("reports", []any{rows, total}, err)
		asn := uint32(15169)
		rows, total, err = a.Reports(ctx, ReportFilter{ASN: &asn, From: time.Unix(1700100000, 0)}, "", false, 1, 2)
		record("reports by AS and date", []any{rows, total}, err)
		d, err := a.Report(ctx, rows[0].ID)
		record("report", d, err)
		var groups []RecordGroup
		record("record groups", &groups, a.RecordGroups(ctx, GroupFilter{AfterID: 1}, func(g RecordGroup) error { groups = append(groups, g); return nil }))
		src, err := a.Sources(ctx, ReportFilter{}, 10)
		record("sources", src, err)
		addrs, err := a.SourceAddresses(ctx, ReportFilter{}, 10)
		record("addresses", addrs, err)
		tls, n, err := a.TLSReports(ctx, ReportFilter{Domains: []string{"example.com"}}, 0, 10)
		record("tls", []any{tls, n}, err)
		td, err := a.TLSReport(ctx, tls[0].ID)
		record("tls report", td, err)
		fr, n, err := a.FailureReports(ctx, ReportFilter{}, 0, 10)
		record("failures", []any{fr, n}, err)
		doms, err := a.Distinct(ctx, "reporter")
		record("distinct", doms, err)
		var changes []DNSChange
		record("dns log", &changes, a.DNSLog(func(c DNSChange) { changes = append(changes, c) }))
		raw, ok, err := a.RawAggregate(ctx, rows[0].ID)
		record("raw", []any{raw, ok}, err)
		meta, err := a.Meta("k")
		record("meta", meta, err)
		last, err := a.LastReportID(ctx)
		record("last id", last, err)
		n64, err := a.Expire(ctx, time.Unix(1700200000, 0))
		record("expired", n64, err)
		n64, err = a.ExpireIdentities(time.Unix(1800000000, 0), 2)
		record("identities expired", n64, err)
		st, err := a.Stats(ctx)
		if err == nil {
			st.Path, st.Bytes = "", 0
		}
		record("stats", st, err)
		record("check", nil, a.Check(ctx))
	}
	for what, s := range out["sqlite"] {
		if p := out["postgres"][what]; p != s {
			t.Errorf("%s differs:\nsqlite   %s\npostgres %s", what, s, p)
		}
	}

	// Opened again, the PostgreSQL archive migrates nothing and keeps all.
	a.Close()
	if a, err = OpenURL(pg.URL); err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if v, err := a.schemaVersion(ctx); err != nil || v != SchemaVersion() {
		t.Errorf("schema version %d (%v), want %d", v, err, SchemaVersion())
	}
}

// TestLeases: one holder at a time, renewed by its holder, taken over
// once expired: on SQLite with the exporter's clock, on PostgreSQL with
// the database's.
func TestLeases(t *testing.T) {
	ctx := context.Background()
	a := openTest(t, t.TempDir())
	now := time.Unix(1700000000, 0)
	take := func(a *Archive, holder string, at time.Duration, ttl time.Duration) bool {
		ok, err := a.TakeLease(ctx, "source:rua", holder, now.Add(at), ttl)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, s := range []struct {
		holder string
		at     time.Duration
		want   bool
	}{
		{"a", 0, true}, {"b", time.Second, false}, {"a", 5 * time.Second, true}, // renewed to 15s
		{"b", 12 * time.Second, false}, {"b", 16 * time.Second, true}, {"a", 17 * time.Second, false},
	} {
		if got := take(a, s.holder, s.at, 10*time.Second); got != s.want {
			t.Errorf("sqlite: %s at %v: %v, want %v", s.holder, s.at, got, s.want)
		}
	}
	if err := a.DropLease(ctx, "source:rua", "b"); err != nil || !take(a, "a", 18*time.Second, 10*time.Second) {
		t.Errorf("sqlite: a lease given up is not free (%v)", err)
	}

	pg := testenv.StartPostgres(t)
	p, err := OpenURL(pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	// The exporters' clocks do not matter: b's is a day ahead.
	if !take(p, "a", 0, 500*time.Millisecond) || take(p, "b", 24*time.Hour, 500*time.Millisecond) || !take(p, "a", 0, 500*time.Millisecond) {
		t.Error("postgres: a lease is not held by one holder against another's clock")
	}
	time.Sleep(600 * time.Millisecond)
	if !take(p, "b", 0, 500*time.Millisecond) || take(p, "a", 0, 500*time.Millisecond) {
		t.Error("postgres: an expired lease was not taken over")
	}
	if err := p.DropLease(ctx, "source:rua", "b"); err != nil || !take(p, "a", 0, time.Second) {
		t.Errorf("postgres: a lease given up is not free (%v)", err)
	}
}

// TestPostgresHostileText: text PostgreSQL refuses (a NUL byte, bytes not
// in UTF-8), which anyone can put in a report or a file name, is stored
// with U+FFFD instead, and found again by the same key.
func TestPostgresHostileText(t *testing.T) {
	pg := testenv.StartPostgres(t)
	a, err := OpenURL(pg.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b := testBatch("hostile")
	b.Inputs[0].Path = "/in/\xffbad\x00name"
	b.TLS = []*TLS{{Identity: "t\x00", Reporter: "evil", Report: &report.TLSReport{OrganizationName: "Ev\x00il", ReportID: "x\xfe"},
		Source: "src", Input: "/in/\xffbad\x00name"}}
	if err := a.Apply(b); err != nil {
		t.Fatalf("a batch with hostile text: %v", err)
	}
	if _, ok, err := a.Input("/in/\xffbad\x00name"); err != nil || !ok {
		t.Errorf("the input is not found again by its path: %v %v", ok, err)
	}
	rows, _, err := a.TLSReports(context.Background(), ReportFilter{}, 0, 10)
	if err != nil || len(rows) != 1 || rows[0].OrgName != "Ev\uFFFDil" {
		t.Errorf("TLS report stored as %+v (%v)", rows, err)
	}
}
