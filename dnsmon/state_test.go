package dnsmon

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// testState is a State on an archive in dir, closed when the test ends.
func testState(t *testing.T, dir string, now func() time.Time) *State {
	t.Helper()
	arc, err := archive.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { arc.Close() })
	s, err := LoadState(arc, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestStateChanges: a record change moves the hash and the last-change
// time exactly once; a SERVFAIL is counted, and is not a change; the
// state and its history survive a restart.
func TestStateChanges(t *testing.T) {
	srv := testenv.StartDNS(t, "../testdata/dns/zones.txt")
	r := &dnsclient.Resolver{Servers: []string{srv.Addr}, Timeout: 2 * time.Second}
	dir := t.TempDir()
	start := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	now := start
	clock := func() time.Time { return now }
	s := testState(t, dir, clock)
	observe := func(at time.Duration) {
		t.Helper()
		now = start.Add(at)
		s.Observe(Observe(context.Background(), r, "good.example.test", KindDMARC, ""))
		if err := s.Save(); err != nil {
			t.Fatal(err)
		}
	}
	state := func() Record { return *s.records[recordKey{"good.example.test", "dmarc"}] }
	observe(0)
	first := state()
	if !first.Present || !first.Valid || first.Hash == 0 || first.LastChange != start.Unix() {
		t.Fatalf("first observation %+v", first)
	}
	observe(time.Hour) // unchanged
	if st := state(); st.Hash != first.Hash || st.LastChange != first.LastChange || len(st.History) != 1 {
		t.Fatalf("unchanged record moved: %+v", st)
	}
	srv.Set(t, "_dmarc.good.example.test", `_dmarc.good.example.test. 300 IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@good.example.test"`)
	observe(2 * time.Hour)
	changed := state()
	if changed.Hash == first.Hash || changed.LastChange != start.Add(2*time.Hour).Unix() || len(changed.History) != 2 {
		t.Fatalf("change not seen once: %+v", changed)
	}
	srv.Fail("_dmarc.good.example.test", true)
	observe(3 * time.Hour)
	if st := state(); st.Hash != changed.Hash || st.LastChange != changed.LastChange || st.Errors["servfail"] != 1 || len(st.History) != 2 {
		t.Fatalf("SERVFAIL taken for a change: %+v", st)
	}
	srv.Fail("_dmarc.good.example.test", false)
	observe(4 * time.Hour)
	if st := state(); st.LastChange != changed.LastChange || len(st.History) != 2 {
		t.Fatalf("recovery from SERVFAIL taken for a change: %+v", st)
	}
	want := `
# HELP dmarc_dns_lookup_errors_total Failed lookups of a record, by rcode (servfail, refused, timeout, ...).
# TYPE dmarc_dns_lookup_errors_total counter
dmarc_dns_lookup_errors_total{domain="good.example.test",rcode="servfail",record="dmarc"} 1
# HELP dmarc_dns_policy_info The DMARC policy that applies to the domain (its own record's, or an ancestor's by the tree walk), as labels; always 1.
# TYPE dmarc_dns_policy_info gauge
dmarc_dns_policy_info{adkim="r",aspf="r",domain="good.example.test",np="",p="none",rua_domains="good.example.test",ruf_domains="",sp="",testing="n"} 1
# HELP dmarc_dns_record_last_change_timestamp_seconds When the record's text was last seen to change (a failed lookup is not a change).
# TYPE dmarc_dns_record_last_change_timestamp_seconds gauge
dmarc_dns_record_last_change_timestamp_seconds{domain="good.example.test",record="dmarc"} 1.7956152e+09
`
	restarted := testState(t, dir, clock)
	names := []string{"dmarc_dns_lookup_errors_total", "dmarc_dns_policy_info", "dmarc_dns_record_last_change_timestamp_seconds"}
	if err := testutil.CollectAndCompare(restarted, strings.NewReader(want), names...); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
	if h := restarted.records[recordKey{"good.example.test", "dmarc"}].History; len(h) != 2 {
		t.Errorf("%d changes after a restart, want 2", len(h))
	}
	if problems, err := testutil.CollectAndLint(restarted); err != nil || len(problems) > 0 {
		t.Errorf("lint: %v %v", err, problems)
	}

	// Not served for a domain no longer configured, nor once stale.
	restarted.SetDomains([]string{"other.example"})
	if n := testutil.CollectAndCount(restarted); n != 0 {
		t.Errorf("%d series for a domain not configured", n)
	}
	restarted.SetDomains(nil)
	now = now.Add(staleAfter + time.Hour)
	if n := testutil.CollectAndCount(restarted); n != 0 {
		t.Errorf("%d series of a record not observed for %v", n, staleAfter)
	}
}
