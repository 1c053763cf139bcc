package dnsmon

import (
	"context"
	"slices"
	"testing"
	"time"
)

// TestMonitorRounds: a round observes every record, DKIM selectors learned
// from reports included; a record is not asked again before max(interval,
// its TTL).
func TestMonitorRounds(t *testing.T) {
	now := time.Now()
	state := testState(t, t.TempDir(), func() time.Time { return now })
	m := &Monitor{Resolver: testResolver(t), State: state, Domains: []string{"good.example.test"},
		Selectors: map[string][]string{"good.example.test": {"old"}}, Interval: time.Minute,
		Learned: func(string) []string { return []string{"s2048"} }}
	m.Round(context.Background())
	want := "[bimi dkim:old dkim:s2048 dmarc mta-sts spf tlsrpt]"
	if got := fmtList(checkedAt(state, now)); got != want {
		t.Fatalf("first round observed %s, want %s", got, want)
	}
	now = now.Add(time.Minute)
	m.Round(context.Background())
	if again := checkedAt(state, now); len(again) != 0 {
		t.Fatalf("records asked again within their TTL (300s): %v", again)
	}
}

func fmtList(s []string) string {
	out := "["
	for i, v := range s {
		if i > 0 {
			out += " "
		}
		out += v
	}
	return out + "]"
}

// checkedAt lists the records last checked at now, sorted.
func checkedAt(s *State, now time.Time) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for k, r := range s.records {
		if r.Checked == now.Unix() {
			out = append(out, k.record)
		}
	}
	slices.Sort(out)
	return out
}
