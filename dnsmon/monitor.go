package dnsmon

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
)

// Monitor polls every record of every domain, with a jittered interval so
// that several exporters do not query in step. It is TTL-aware: a record
// is asked again after max(Interval, its TTL), since a resolver answers
// from its cache until the TTL runs out.
type Monitor struct {
	Resolver *dnsclient.Resolver
	State    *State
	Domains  []string
	// Selectors are the configured DKIM selectors per domain; Learned
	// gives those seen in a domain's reports (nil: none).
	Selectors map[string][]string
	Learned   func(domain string) []string
	Interval  time.Duration
	Log       *slog.Logger

	due map[string]time.Time // next lookup per domain and record
}

// observeTimeout bounds one record's lookups (SPF includes, tree walk).
const observeTimeout = 30 * time.Second

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

// Round observes every record that is due once and saves.
func (m *Monitor) Round(ctx context.Context) {
	if m.due == nil {
		m.due = map[string]time.Time{}
	}
	observe := func(d, kind, sel string) {
		key := d + "\x00" + kind + "\x00" + sel
		now := time.Now()
		if now.Before(m.due[key]) {
			return
		}
		octx, cancel := context.WithTimeout(ctx, observeTimeout)
		o := Observe(octx, m.Resolver, d, kind, sel)
		cancel()
		// Due a little early, so that a round's jitter does not skip it.
		m.due[key] = now.Add(max(m.Interval, o.TTL) * 9 / 10)
		m.State.Observe(o)
	}
	for _, d := range m.Domains {
		for _, kind := range []string{KindDMARC, KindSPF, KindMTASTS, KindTLSRPT, KindBIMI} {
			if ctx.Err() != nil {
				return
			}
			observe(d, kind, "")
		}
		sels := slices.Clone(m.Selectors[d])
		if m.Learned != nil {
			for _, s := range m.Learned(d) {
				if !slices.Contains(sels, s) {
					sels = append(sels, s)
				}
			}
		}
		if len(sels) > maxWatchedSelectors {
			sels = sels[:maxWatchedSelectors]
		}
		for _, s := range sels {
			observe(d, KindDKIM, s)
		}
	}
	if err := m.State.Save(); err != nil && m.Log != nil {
		m.Log.Error("save DNS observations", "err", err)
	}
}
