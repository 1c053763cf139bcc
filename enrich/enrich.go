// Package enrich says who sent the mail a DMARC record counts: the source
// address's AS and country (from MaxMind-format databases, read offline),
// its forward-confirmed name (reverse DNS with github.com/miekg/dns,
// cached), the known sending service behind it (senders.yml and the
// user's own list), whether the domain owner trusts it (configured
// networks and services, and the networks the domain's SPF record
// authorises), and from all that a class: authorized, forwarded,
// mailing_list, misconfigured, unknown or threat (class.go).
//
// Nothing here may slow ingest for long: databases are memory-mapped,
// names come from a cache or from lookups bounded in time and number, and
// a failing resolver is paused.
package enrich

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/dnsmon"
)

// Identity is what is known of a source address.
type Identity struct {
	ASN     uint   // 0: unknown
	ASOrg   string // the AS's organisation
	Country string // ISO 3166 code
	// Host is the registrable domain of the address's forward-confirmed
	// name ("" when it has none).
	Host string
	// Sender is the known service the address belongs to, by its name or
	// its AS; nil when none.
	Sender *Sender
	// TrustedNetwork says which trusted network holds the address:
	// "configured" or "SPF record"; "" for none.
	TrustedNetwork string
	// TrustedService is set when Sender is one of the domain's trusted
	// services.
	TrustedService bool
	// Own is set when Host is the domain's own registrable domain.
	Own bool
}

// Name is the source_name label value: the known sender's name, else the
// confirmed host's registrable domain, else "unknown".
func (id Identity) Name() string {
	switch {
	case id.Sender != nil:
		return id.Sender.Name
	case id.Host != "":
		return id.Host
	}
	return "unknown"
}

// ASNLabel is the source_asn label value.
func (id Identity) ASNLabel() string {
	if id.ASN == 0 {
		return "unknown"
	}
	return strconv.FormatUint(uint64(id.ASN), 10)
}

// Trust is what a domain's owner trusts.
type Trust struct {
	Networks []netip.Prefix
	Services []string // known sender names
	// SPF trusts the networks the domain's own SPF record authorises.
	SPF bool
}

// Options configure an Enricher; every part is optional.
type Options struct {
	ASN, Country *DB
	Names        *Names
	Senders      *Senders
	// Trust is per domain; a policy domain uses the entry of the most
	// specific domain at or above it.
	Trust map[string]Trust
	// Resolver expands SPF records for Trust.SPF.
	Resolver *dnsclient.Resolver
	Metrics  *Metrics
	Log      *slog.Logger
}

// The networks of an SPF record are used for spfRefresh before the record
// is read again, or spfRetry after a failed read; a read may take
// spfTimeout.
const (
	spfRefresh = time.Hour
	spfRetry   = time.Minute
	spfTimeout = 10 * time.Second
)

// Enricher identifies and classifies sources.
type Enricher struct {
	opts Options

	trusted []string // the domains of opts.Trust

	mu  sync.Mutex
	spf map[string]spfNets // per trusted domain
}

type spfNets struct {
	nets     []netip.Prefix
	fetched  time.Time
	failed   bool // the last read failed
	fetching bool
}

// New returns an Enricher.
func New(opts Options) *Enricher {
	if opts.Log == nil {
		opts.Log = slog.New(slog.DiscardHandler)
	}
	if opts.Metrics == nil {
		opts.Metrics = NewMetrics(nil)
	}
	return &Enricher{opts: opts, trusted: slices.Collect(maps.Keys(opts.Trust)), spf: map[string]spfNets{}}
}

// Identify returns the identity of each address, as sources of mail for
// policyDomain. Names are looked up concurrently, busiest addresses first
// (the order of ips), within the ration of Names; ctx bounds how long.
func (e *Enricher) Identify(ctx context.Context, policyDomain string, ips []netip.Addr) map[netip.Addr]Identity {
	trustDomain, trust := e.trustFor(policyDomain)
	var spf []netip.Prefix
	if trust.SPF {
		spf = e.spfNetworks(trustDomain)
	}
	var names map[netip.Addr]string
	if e.opts.Names != nil {
		names = e.opts.Names.Resolve(ctx, ips)
	}
	own := RegistrableDomain(policyDomain)
	out := make(map[netip.Addr]Identity, len(ips))
	for _, ip := range ips {
		id := Identity{Host: names[ip]}
		if e.opts.ASN != nil {
			id.ASN, id.ASOrg = e.opts.ASN.ASN(ip)
		}
		if e.opts.Country != nil {
			id.Country = e.opts.Country.Country(ip)
		}
		if e.opts.Senders != nil {
			if id.Host != "" {
				id.Sender = e.opts.Senders.ByDomain(id.Host)
			}
			if id.Sender == nil && id.ASN != 0 {
				id.Sender = e.opts.Senders.ByASN(id.ASN)
			}
		}
		id.Own = id.Host != "" && id.Host == own
		for _, n := range trust.Networks {
			if n.Contains(ip) {
				id.TrustedNetwork = "configured"
			}
		}
		for _, n := range spf {
			if id.TrustedNetwork == "" && n.Contains(ip) {
				id.TrustedNetwork = "SPF record"
			}
		}
		if id.Sender != nil {
			for _, s := range trust.Services {
				id.TrustedService = id.TrustedService || s == id.Sender.Name
			}
		}
		out[ip] = id
	}
	return out
}

// trustFor returns the trust of the most specific domain at or above
// policyDomain.
func (e *Enricher) trustFor(policyDomain string) (string, Trust) {
	best := config.Covering(policyDomain, e.trusted)
	return best, e.opts.Trust[best]
}

// spfNetworks returns the networks domain's SPF record authorises. The
// record is read with its own timeout, not under the caller's deadline and
// not under e.mu; again every spfRefresh after a good read, every
// spfRetry after a failed one, which keeps the networks of the last good
// read.
func (e *Enricher) spfNetworks(domain string) []netip.Prefix {
	if e.opts.Resolver == nil {
		return nil
	}
	e.mu.Lock()
	cur, ok := e.spf[domain]
	due := !ok || time.Since(cur.fetched) >= spfRefresh || cur.failed && time.Since(cur.fetched) >= spfRetry
	if !due || cur.fetching {
		e.mu.Unlock()
		return cur.nets
	}
	cur.fetching = true
	e.spf[domain] = cur
	e.mu.Unlock()

	ctx, cancel := context.WithTimeout(context.Background(), spfTimeout)
	defer cancel()
	nets, err := dnsmon.SPFNetworks(ctx, e.opts.Resolver, domain)

	e.mu.Lock()
	defer e.mu.Unlock()
	cur = e.spf[domain]
	cur.fetching, cur.fetched, cur.failed = false, time.Now(), err != nil
	if err != nil {
		e.opts.Metrics.lookupErrors.WithLabelValues("spf").Inc()
		e.opts.Log.Warn("SPF networks of a trusted domain: keeping the last good ones", "domain", domain, "err", err)
	} else {
		cur.nets = nets
	}
	e.spf[domain] = cur
	return cur.nets
}

// Metrics are the enrichment's own health metrics.
type Metrics struct {
	cacheHits    prometheus.Counter
	cacheMisses  prometheus.Counter
	lookupErrors *prometheus.CounterVec
}

// NewMetrics creates the metrics and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		cacheHits: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dmarc_enrichment_name_cache_hits_total",
			Help: "Source addresses whose name came from the cache.",
		}),
		cacheMisses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dmarc_enrichment_name_cache_misses_total",
			Help: "Source addresses whose name was not cached (looked up, or skipped while lookups are paused).",
		}),
		lookupErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dmarc_enrichment_lookup_errors_total",
			Help: "Failed lookups for enrichment, by kind: timeout, servfail, error (reverse DNS), skipped (paused after repeated failures), spf (the SPF record of a trusted domain).",
		}, []string{"kind"}),
	}
	for _, k := range []string{"timeout", "servfail", "error", "skipped", "spf"} {
		m.lookupErrors.WithLabelValues(k)
	}
	if reg != nil {
		reg.MustRegister(m.cacheHits, m.cacheMisses, m.lookupErrors)
	}
	return m
}

// CacheMisses is the counter of names not found in the cache.
func (m *Metrics) CacheMisses() prometheus.Counter { return m.cacheMisses }

// DatabaseCollector serves the build time of the databases in use, as
// dmarc_enrichment_database_build_timestamp_seconds{database}.
type DatabaseCollector struct {
	mu  sync.Mutex
	dbs map[string]*DB // by kind: asn, country
}

// Set replaces the databases served (after a reload).
func (c *DatabaseCollector) Set(dbs map[string]*DB) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.dbs = dbs
}

var dbBuildDesc = prometheus.NewDesc("dmarc_enrichment_database_build_timestamp_seconds",
	"When the MaxMind-format database in use was built, by kind (asn, country); the file is read again when it changes.",
	[]string{"database"}, nil)

// Describe implements prometheus.Collector.
func (c *DatabaseCollector) Describe(ch chan<- *prometheus.Desc) { ch <- dbBuildDesc }

// Collect implements prometheus.Collector.
func (c *DatabaseCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for kind, db := range c.dbs {
		if db != nil {
			db.reader() // pick up a new file
			ch <- prometheus.MustNewConstMetric(dbBuildDesc, prometheus.GaugeValue, float64(db.BuildTime().Unix()), kind)
		}
	}
}
