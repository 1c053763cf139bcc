package dnsmon

import (
	"context"
	"testing"
	"time"
)

// countingSink records what the monitor hands on.
type countingSink struct{ seen []string }

func (c *countingSink) ObserveDNS(o *Observation) { c.seen = append(c.seen, o.Name()) }
func (c *countingSink) Selectors(string) []string { return []string{"s2048"} }
func (c *countingSink) Commit() error             { return nil }

// TestMonitorRounds: a round observes every record, DKIM selectors learned
// from reports included; a record is not asked again before max(interval,
// its TTL).
func TestMonitorRounds(t *testing.T) {
	sink := &countingSink{}
	m := &Monitor{Resolver: testResolver(t), Sink: sink, Domains: []string{"good.example.test"},
		Selectors: map[string][]string{"good.example.test": {"old"}}, Interval: time.Minute}
	m.Round(context.Background())
	want := "[dmarc spf mta-sts tlsrpt bimi dkim:old dkim:s2048]"
	if got := fmtList(sink.seen); got != want {
		t.Fatalf("first round observed %s, want %s", got, want)
	}
	sink.seen = nil
	m.Round(context.Background())
	if len(sink.seen) != 0 {
		t.Fatalf("records asked again within their TTL (300s): %v", sink.seen)
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
