package collector

import (
	"cmp"
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// Who sent the mail: each record's source address is given an identity
// and a class by package enrich, and counted in dmarc_source_messages_total
// under per-domain caps on distinct AS numbers, countries and names.

// enrichTimeout bounds the name lookups of one report, so that a slow
// resolver delays ingest by at most this much per report (and
// enrich.MaxLookups bounds the lookups themselves).
const enrichTimeout = 10 * time.Second

// maxSourceAddrs bounds the distinct source addresses of a report that
// are identified; the messages of the others are counted without an
// identity, so that a forged report of a million addresses costs no more.
const maxSourceAddrs = 10_000

// sourceSeriesFactor times Limits.SourcesPerDomain bounds the
// dmarc_source_messages_total series of a domain: the label caps alone
// would allow their product.
const sourceSeriesFactor = 10

// sourceCombo is a dmarc_source_messages_total series before the domain
// and the caps.
type sourceCombo struct {
	asn, org, country, name   string
	class, disposition, dmarc string
}

// sourceRecord is what a report's records say per source address.
type sourceRecord struct {
	ip                 netip.Addr
	badIP              bool // the record's source address is unreadable
	disposition, dmarc string
	facts              enrich.Facts
}

// enrichReports identifies the sources of the aggregate reports of an
// input that will be counted (want; nil: all): not those for a domain
// that is not monitored, nor those already counted, so that a hostile
// sender's forged or repeated reports cost no lookups.
func enrichReports(e *enrich.Enricher, parsed *parsedFile, labelLength int, want func(*parsedReport) (bool, error)) error {
	for _, p := range parsed.aggregates {
		if p.records == nil {
			continue
		}
		if want != nil {
			if ok, err := want(p); err != nil {
				return fmt.Errorf("%w: %w", report.ErrRead, err)
			} else if !ok {
				continue
			}
		}
		var ids map[netip.Addr]enrich.Identity
		p.sources, ids = enrichRecords(e, p.policyDomain, p.records, labelLength)
		for i := range p.kept {
			r := &p.kept[i]
			src := recordSource(ids[r.SourceIP], enrich.FactsOf(r.Record), r.BadSourceIP, labelLength)
			r.Source = archive.SourceIdentity{ASN: uint32(ids[r.SourceIP].ASN), Org: src.Org, Country: src.Country,
				Name: src.Name, Class: src.Class, Reason: src.Reason}
		}
	}
	return nil
}

// mayCount reports whether stage would count p: its domain is monitored
// and its identity not seen yet.
func (s *Store) mayCount(p *parsedReport) (bool, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if _, ok := s.configuredDomain(p.policyDomain); !ok {
		return false, nil
	}
	known, err := s.knownID(p.id)
	return !known, err
}

// enrichRecords identifies the sources of a report's records (busiest
// first, within enrichTimeout) and sums their messages by identity and
// class, as label values. dmarc-exporter parse --enrich shows the same.
func enrichRecords(e *enrich.Enricher, policyDomain string, recs map[sourceRecord]uint64, labelLength int) (map[sourceCombo]uint64, map[netip.Addr]enrich.Identity) {
	perIP := map[netip.Addr]uint64{}
	for r, n := range recs {
		if r.ip.IsValid() {
			perIP[r.ip] += n
		}
	}
	ids := identify(e, policyDomain, perIP)
	out := map[sourceCombo]uint64{}
	for r, n := range recs {
		c := recordSource(ids[r.ip], r.facts, r.badIP, labelLength)
		out[sourceCombo{asn: c.ASN, org: c.Org, country: c.Country, name: c.Name, class: c.Class,
			disposition: r.disposition, dmarc: r.dmarc}] += n
	}
	return out, ids
}

// IdentifyRecords identifies the sources of a report's records, as
// ingest does: at most maxSourceAddrs addresses, busiest first.
func IdentifyRecords(e *enrich.Enricher, policyDomain string, recs []*report.Record) map[netip.Addr]enrich.Identity {
	perIP := map[netip.Addr]uint64{}
	for _, r := range recs {
		if _, ok := perIP[r.SourceIP]; (ok || len(perIP) < maxSourceAddrs) && r.SourceIP.IsValid() && !r.BadCount {
			perIP[r.SourceIP] += r.Count
		}
	}
	return identify(e, policyDomain, perIP)
}

// identify identifies addresses busiest first, within enrichTimeout.
func identify(e *enrich.Enricher, policyDomain string, perIP map[netip.Addr]uint64) map[netip.Addr]enrich.Identity {
	ips := slices.Collect(maps.Keys(perIP))
	slices.SortFunc(ips, func(a, b netip.Addr) int {
		if c := cmp.Compare(perIP[b], perIP[a]); c != 0 {
			return c
		}
		return a.Compare(b)
	})
	ctx, cancel := context.WithTimeout(context.Background(), enrichTimeout)
	defer cancel()
	return e.Identify(ctx, policyDomain, ips)
}

// recordSource is the source of a record: its identity's labels, or
// "invalid" for a record whose address is unreadable.
func recordSource(id enrich.Identity, facts enrich.Facts, badIP bool, labelLength int) Source {
	if badIP {
		return Source{ASN: "invalid", Org: "invalid", Country: "invalid", Name: "invalid", Class: "unknown",
			Reason: "the record's source address is missing or unreadable"}
	}
	return SourceLabels(id, facts, labelLength)
}

// Source is the label values of a source, and why it has its class.
type Source struct {
	ASN, Org, Country, Name, Class string
	Reason                         string
}

// SourceLabels makes the label values of an identity, bounded as every
// label is: the name from DNS is hostile, the organisation is cut at a
// character boundary.
func SourceLabels(id enrich.Identity, facts enrich.Facts, labelLength int) Source {
	class, reason := enrich.Classify(facts, id)
	out := Source{ASN: id.ASNLabel(), Org: "unknown", Country: "unknown", Name: sanitize(id.Name(), labelLength),
		Class: string(class), Reason: reason}
	if org := strings.ToValidUTF8(strings.TrimSpace(id.ASOrg), ""); org != "" {
		out.Org = truncateRunes(org, labelLength)
	}
	if id.Country != "" {
		out.Country = sanitize(id.Country, 8)
	}
	return out
}

// sourceRecordOf reduces a record to what enrichment needs; once a report
// has maxSourceAddrs of them, the rest go without their address.
func sourceRecordOf(rec *report.Record, k comboKey, have int) sourceRecord {
	r := sourceRecord{ip: rec.SourceIP, badIP: rec.BadSourceIP, disposition: k.disposition, dmarc: k.dmarc, facts: enrich.FactsOf(rec)}
	if have >= maxSourceAddrs {
		r.ip = netip.Addr{}
	}
	return r
}

// truncateRunes cuts s to at most n bytes, at a character boundary.
func truncateRunes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// stageSources adds a report's sources to the batch, capping the
// distinct AS numbers, countries and names per domain (over the cap:
// "other"; the AS organisation follows its AS number), and the series of
// the domain: past sourceSeriesFactor × the cap, a new series has all four
// as "other". s.mu is held.
func (s *Store) stageSources(b *batch, domain string, sources map[sourceCombo]uint64) {
	for c, n := range sources {
		asn, org := s.capped(b, s.sourceASNs, domain, c.asn, "source_asn"), c.org
		if asn == otherLabel {
			org = otherLabel
		}
		country := s.capped(b, s.sourceCountries, domain, c.country, "source_country")
		name := s.capped(b, s.sourceNames, domain, c.name, "source_name")
		key := seriesKey(domain, asn, org, country, name, c.class, c.disposition, c.dmarc)
		if !s.hasSeries(b, sourcesFamily, key) && s.sourceSeries[domain] >= sourceSeriesFactor*s.opts.Limits.SourcesPerDomain {
			b.totals.add(overflowFamily, 1, "source_series")
			asn, org, country, name = otherLabel, otherLabel, otherLabel, otherLabel
			key = seriesKey(domain, asn, org, country, name, c.class, c.disposition, c.dmarc)
		}
		if !s.hasSeries(b, sourcesFamily, key) {
			s.sourceSeries[domain]++
		}
		b.totals.add(sourcesFamily, n, domain, asn, org, country, name, c.class, c.disposition, c.dmarc)
	}
}

// hasSeries reports whether a series exists, live, pending, being saved
// or in b. s.mu is held.
func (s *Store) hasSeries(b *batch, f *family, key string) bool {
	for _, t := range []*batch{b, s.pending, s.committing} {
		if t != nil && t.totals.has(f, key) {
			return true
		}
	}
	return s.live.has(f, key)
}

// capped returns value, or "other" when domain has
// Limits.SourcesPerDomain other values of that label already.
func (s *Store) capped(b *batch, sets map[string]map[string]struct{}, domain, value, label string) string {
	set := setOf(sets, domain)
	if _, known := set[value]; !known {
		if len(set) >= s.opts.Limits.SourcesPerDomain {
			b.totals.add(overflowFamily, 1, label)
			value = otherLabel
		}
		set[value] = struct{}{}
	}
	return value
}
