package collector

import (
	"context"
	"net/netip"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/enrich"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// Who sent the mail: each record's source address is given an identity
// and a class by package enrich, and counted in dmarc_source_messages_total
// under per-domain caps on distinct AS numbers, countries and names.

// enrichTimeout bounds the name lookups of one report, so that a slow
// resolver delays ingest by at most this much per report.
const enrichTimeout = 10 * time.Second

// sourceKey is a series of dmarc_source_messages_total.
type sourceKey struct {
	domain                    string
	asn, org, country, name   string
	class, disposition, dmarc string
}

// sourceCombo is a sourceKey before the domain and the caps.
type sourceCombo struct {
	asn, org, country, name   string
	class, disposition, dmarc string
}

// sourceRecord is what a report's records say per source address.
type sourceRecord struct {
	ip                 netip.Addr
	disposition, dmarc string
	facts              enrich.Facts
}

// enrichReport identifies the sources of a report's records and sums
// their messages by identity and class.
func enrichReport(e *enrich.Enricher, policyDomain string, recs map[sourceRecord]uint64, labelLength int) map[sourceCombo]uint64 {
	if e == nil || len(recs) == 0 {
		return nil
	}
	seen := map[netip.Addr]bool{}
	var ips []netip.Addr
	for r := range recs {
		if !seen[r.ip] {
			seen[r.ip] = true
			ips = append(ips, r.ip)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), enrichTimeout)
	defer cancel()
	ids := e.Identify(ctx, policyDomain, ips)
	out := map[sourceCombo]uint64{}
	for r, n := range recs {
		id := ids[r.ip]
		class, _ := enrich.Classify(r.facts, id)
		c := sourceCombo{asn: id.ASNLabel(), org: "unknown", country: "unknown", name: sanitize(id.Name(), labelLength),
			class: string(class), disposition: r.disposition, dmarc: r.dmarc}
		if id.ASOrg != "" {
			c.org = truncate(id.ASOrg, labelLength)
		}
		if id.Country != "" {
			c.country = sanitize(id.Country, 8)
		}
		out[c] += n
	}
	return out
}

// sourceRecordOf reduces a record to what enrichReport needs.
func sourceRecordOf(rec *report.Record, k comboKey) sourceRecord {
	return sourceRecord{ip: rec.SourceIP, disposition: k.disposition, dmarc: k.dmarc, facts: enrich.FactsOf(rec)}
}

func truncate(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// stageSources adds a report's sources to the pending batch, capping the
// distinct AS numbers, countries and names per domain (over the cap:
// "other"; the AS organisation follows its AS number). s.mu is held.
func (s *Store) stageSources(domain string, sources map[sourceCombo]uint64) {
	for c, n := range sources {
		asn, org := s.capped(s.sourceASNs, domain, c.asn, "source_asn"), c.org
		if asn == otherLabel {
			org = otherLabel
		}
		k := sourceKey{domain: domain, asn: asn, org: s.in.get(org),
			country: s.capped(s.sourceCountries, domain, c.country, "source_country"),
			name:    s.capped(s.sourceNames, domain, c.name, "source_name"),
			class:   s.in.get(c.class), disposition: s.in.get(c.disposition), dmarc: s.in.get(c.dmarc)}
		s.pending.sources[k] += n
	}
}

// capped returns value, or "other" when domain has
// Limits.SourcesPerDomain other values of that label already.
func (s *Store) capped(sets map[string]map[string]struct{}, domain, value, label string) string {
	set := sets[domain]
	if set == nil {
		set = map[string]struct{}{}
		sets[domain] = set
	}
	if _, known := set[value]; !known {
		if len(set) >= s.opts.Limits.SourcesPerDomain {
			s.pending.overflow[label]++
			value = otherLabel
		}
		set[value] = struct{}{}
	}
	return s.in.get(value)
}
