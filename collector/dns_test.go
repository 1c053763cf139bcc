package collector

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/dnsmon"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// TestDNSChanges: a record change moves the hash and the last-change time
// exactly once; a SERVFAIL is counted, and is not a change; the history
// survives a restart.
func TestDNSChanges(t *testing.T) {
	srv := testenv.StartDNS(t, "../testdata/dns/zones.txt")
	r := &dnsclient.Resolver{Servers: []string{srv.Addr}, Timeout: 2 * time.Second}
	dir := t.TempDir()
	now := testNow
	open := func() *Store {
		s := testStore(t, dir, "good.example.test")
		s.opts.Now = func() time.Time { return now }
		return s
	}
	s := open()
	observe := func(at time.Duration) {
		t.Helper()
		now = testNow.Add(at)
		s.ObserveDNS(dnsmon.Observe(context.Background(), r, "good.example.test", dnsmon.KindDMARC, ""))
		if err := s.Commit(); err != nil {
			t.Fatal(err)
		}
	}
	state := func() *dnsRecord {
		return s.dns[dnsKey{"good.example.test", "dmarc"}]
	}
	observe(0)
	first := *state()
	if !first.Present || !first.Valid || first.Hash == 0 || first.LastChange != testNow.Unix() {
		t.Fatalf("first observation %+v", first)
	}
	observe(time.Hour) // unchanged
	if st := state(); st.Hash != first.Hash || st.LastChange != first.LastChange || len(st.History) != 1 {
		t.Fatalf("unchanged record moved: %+v", st)
	}
	srv.Set(t, "_dmarc.good.example.test", `_dmarc.good.example.test. 300 IN TXT "v=DMARC1; p=none; rua=mailto:dmarc@good.example.test"`)
	observe(2 * time.Hour)
	changed := *state()
	if changed.Hash == first.Hash || changed.LastChange != testNow.Add(2*time.Hour).Unix() || len(changed.History) != 2 {
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
	if err := testutil.CollectAndCompare(open(), strings.NewReader(want), "dmarc_dns_lookup_errors_total",
		"dmarc_dns_policy_info", "dmarc_dns_record_last_change_timestamp_seconds"); err != nil {
		t.Fatalf("after a restart: %v", err)
	}
}
