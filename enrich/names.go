package enrich

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/publicsuffix"
	"golang.org/x/time/rate"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
)

// RegistrableDomain reduces a host name to its registrable domain with the
// ICANN section of the Public Suffix List: one label above the longest
// ICANN public suffix. Private suffixes (compute-1.amazonaws.com, ...) are
// not used, so that cloud hosts give their provider's domain rather than
// one value per host. "" when the name has no such domain.
func RegistrableDomain(host string) string {
	host = strings.TrimSuffix(strings.ToLower(host), ".")
	labels := strings.Split(host, ".")
	for i := 1; i < len(labels); i++ {
		suffix := strings.Join(labels[i:], ".")
		if ps, icann := publicsuffix.PublicSuffix(suffix); icann && ps == suffix {
			if labels[i-1] == "" {
				return ""
			}
			return strings.Join(labels[i-1:], ".")
		}
	}
	return ""
}

// Name caching: positive answers live for their DNS TTL within these
// bounds, failures for a short while, so that a dead resolver is not
// asked again for every record.
const (
	minNameTTL   = 5 * time.Minute
	maxNameTTL   = 24 * time.Hour
	negativeTTL  = 15 * time.Minute // no PTR, or not confirmed
	errorTTL     = time.Minute      // timeout, SERVFAIL
	maxPTRNames  = 3                // PTR names tried for forward confirmation
	defaultCache = 100_000
	// Uncached lookups are rationed: anyone can send a report with
	// thousands of addresses whose reverse zones answer slowly. At most
	// MaxLookups per Resolve call, and lookupRate a second over time
	// (with a burst of lookupBurst); addresses past the ration get no
	// name this time, and are not cached, so a later report may name
	// them. Callers pass addresses busiest first.
	MaxLookups  = 256
	lookupRate  = 50
	lookupBurst = 512
)

// Names resolves source addresses to forward-confirmed names: the PTR
// names of the address whose A or AAAA records lead back to it, reduced to
// their registrable domain. Answers are cached (TTL-aware, size-capped);
// at most Concurrency lookups run at once, each bounded by Timeout.
type Names struct {
	resolver *dnsclient.Resolver
	timeout  time.Duration
	sem      chan struct{}
	maxSize  int
	now      func() time.Time
	metrics  *Metrics

	limiter    *rate.Limiter
	maxLookups int // MaxLookups

	mu    sync.Mutex
	cache map[netip.Addr]nameEntry
	// A resolver that keeps failing is left alone for a while, so that a
	// dead one costs nothing but a metric: after breakerFailures failures
	// in a row, no lookup is made until pausedUntil.
	failures    int
	pausedUntil time.Time
}

const (
	breakerFailures = 5
	breakerPause    = time.Minute
)

type nameEntry struct {
	name    string // registrable domain; "" for none
	expires time.Time
}

// NewNames returns a resolver of source names; concurrency and cacheSize
// of 0 take defaults (8, 100000).
func NewNames(r *dnsclient.Resolver, timeout time.Duration, concurrency, cacheSize int, m *Metrics) *Names {
	if concurrency <= 0 {
		concurrency = 8
	}
	if cacheSize <= 0 {
		cacheSize = defaultCache
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Names{resolver: r, timeout: timeout, sem: make(chan struct{}, concurrency), maxSize: cacheSize,
		now: time.Now, metrics: m, cache: map[netip.Addr]nameEntry{}, limiter: rate.NewLimiter(lookupRate, lookupBurst), maxLookups: MaxLookups}
}

// cached returns a fresh cache entry for ip.
func (n *Names) cached(ip netip.Addr) (string, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	e, ok := n.cache[ip]
	if !ok || n.now().After(e.expires) {
		return "", false
	}
	return e.name, true
}

func (n *Names) store(ip netip.Addr, name string, ttl time.Duration) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if len(n.cache) >= n.maxSize {
		// Drop the expired entries, and if that is not enough a tenth of
		// the rest, in Go's random map order.
		now := n.now()
		for k, e := range n.cache {
			if now.After(e.expires) {
				delete(n.cache, k)
			}
		}
		for k := range n.cache {
			if len(n.cache) < n.maxSize*9/10 {
				break
			}
			delete(n.cache, k)
		}
	}
	n.cache[ip] = nameEntry{name: name, expires: n.now().Add(ttl)}
}

// Resolve looks up the names of ips, concurrently and from the cache
// where it can, and returns those found. It returns when all are done or
// ctx ends; addresses not resolved by then, or past the ration of
// uncached lookups, have no name.
func (n *Names) Resolve(ctx context.Context, ips []netip.Addr) map[netip.Addr]string {
	out := map[netip.Addr]string{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	lookups := 0
	for _, ip := range ips {
		if name, ok := n.cached(ip); ok {
			n.metrics.cacheHits.Inc()
			if name != "" {
				mu.Lock()
				out[ip] = name
				mu.Unlock()
			}
			continue
		}
		n.metrics.cacheMisses.Inc()
		if n.paused() || ctx.Err() != nil || lookups >= n.maxLookups || !n.limiter.Allow() {
			n.metrics.lookupErrors.WithLabelValues("skipped").Inc()
			continue
		}
		select {
		case n.sem <- struct{}{}:
		case <-ctx.Done():
			n.metrics.lookupErrors.WithLabelValues("skipped").Inc()
			continue
		}
		lookups++
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-n.sem }()
			name := n.lookup(ctx, ip)
			if name != "" {
				mu.Lock()
				out[ip] = name
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return out
}

// paused reports whether lookups are suspended after repeated failures.
func (n *Names) paused() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.now().Before(n.pausedUntil)
}

// lookup resolves one address and caches the answer.
// lookup resolves one address and caches the answer. When the caller's
// ctx ends first, nothing is cached or counted against the resolver: the
// caller ran out of time, the resolver did not fail.
func (n *Names) lookup(parent context.Context, ip netip.Addr) string {
	ctx, cancel := context.WithTimeout(parent, n.timeout)
	defer cancel()
	ptrs, ttl, err := n.resolver.PTR(ctx, ip)
	if err != nil {
		n.fail(parent, ip, err)
		return ""
	}
	qtype := dns.TypeA
	if ip.Is6() {
		qtype = dns.TypeAAAA
	}
	for _, host := range ptrs[:min(len(ptrs), maxPTRNames)] {
		addrs, attl, err := n.resolver.Addrs(ctx, host, qtype)
		if err != nil {
			n.fail(parent, ip, err)
			return ""
		}
		if !slices.Contains(addrs, ip) {
			continue
		}
		name := RegistrableDomain(host)
		if name == "" {
			continue
		}
		n.answered()
		n.store(ip, name, min(max(time.Duration(min(ttl, attl))*time.Second, minNameTTL), maxNameTTL))
		return name
	}
	n.answered()
	n.store(ip, "", negativeTTL) // no PTR, or none leads back to ip
	return ""
}

func (n *Names) answered() {
	n.mu.Lock()
	n.failures = 0
	n.mu.Unlock()
}

func (n *Names) fail(parent context.Context, ip netip.Addr, err error) {
	if parent.Err() != nil {
		n.metrics.lookupErrors.WithLabelValues("skipped").Inc()
		return
	}
	kind := "error"
	switch {
	case isTimeout(err):
		kind = "timeout"
	case isRcode(err):
		kind = "servfail"
	}
	n.metrics.lookupErrors.WithLabelValues(kind).Inc()
	n.store(ip, "", errorTTL)
	if kind == "servfail" {
		return // the resolver answered
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.failures++; n.failures >= breakerFailures {
		n.failures = 0
		n.pausedUntil = n.now().Add(breakerPause)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

func isRcode(err error) bool {
	var re *dnsclient.RcodeError
	return errors.As(err, &re)
}
