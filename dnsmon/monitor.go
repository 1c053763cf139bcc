package dnsmon

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"
)

// Sink takes what the monitor observes; collector.Store implements it.
type Sink interface {
	ObserveDNS(*Observation)
	// Selectors are the DKIM selectors seen in a domain's reports.
	Selectors(domain string) []string
	Commit() error
}

// Monitor polls every record of every domain, with a jittered interval so
// that several exporters do not query in step.
type Monitor struct {
	Resolver  *Resolver
	Sink      Sink
	Domains   []string
	Selectors map[string][]string // configured DKIM selectors per domain
	Interval  time.Duration
	Log       *slog.Logger
}

// maxWatchedSelectors bounds the DKIM selectors watched per domain.
const maxWatchedSelectors = 20

// Run polls until ctx is done.
func (m *Monitor) Run(ctx context.Context) {
	for {
		m.Round(ctx)
		jitter := time.Duration(rand.Int64N(int64(m.Interval)/5+1)) - m.Interval/10
		select {
		case <-ctx.Done():
			return
		case <-time.After(m.Interval + jitter):
		}
	}
}

// Round observes every record once and saves.
func (m *Monitor) Round(ctx context.Context) {
	for _, d := range m.Domains {
		for _, kind := range []string{KindDMARC, KindSPF, KindMTASTS, KindTLSRPT, KindBIMI} {
			if ctx.Err() != nil {
				return
			}
			m.Sink.ObserveDNS(Observe(ctx, m.Resolver, d, kind, ""))
		}
		sels := slices.Clone(m.Selectors[d])
		for _, s := range m.Sink.Selectors(d) {
			if !slices.Contains(sels, s) {
				sels = append(sels, s)
			}
		}
		if len(sels) > maxWatchedSelectors {
			sels = sels[:maxWatchedSelectors]
		}
		for _, s := range sels {
			m.Sink.ObserveDNS(Observe(ctx, m.Resolver, d, KindDKIM, s))
		}
	}
	if err := m.Sink.Commit(); err != nil && m.Log != nil {
		m.Log.Error("save DNS observations", "err", err)
	}
}
