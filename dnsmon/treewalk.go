package dnsmon

import (
	"context"
	"strings"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
)

// maxTreeWalkQueries bounds the DNS tree walk (RFC 9989 §4.10).
const maxTreeWalkQueries = 8

// TreeWalk finds the DMARC record that governs domain: its own, or else
// the nearest ancestor's, by the DNS tree walk of RFC 9989 §4.10: a domain
// of eight labels or more is first cut to its seven rightmost, then labels
// are removed from the left, one query at a time, down to the top-level
// domain (where public suffix operators publish psd=y records), at most
// eight queries in all. at is where the record was found;
// rec is nil when none was.
func TreeWalk(ctx context.Context, r *dnsclient.Resolver, domain string) (rec *DMARCRecord, at string, err error) {
	queries := 0
	try := func(name string) (*DMARCRecord, error) {
		queries++
		found, err := dmarcRecords(ctx, r, name)
		if err != nil {
			return nil, err
		}
		if len(found) != 1 {
			return nil, nil // none, or several: neither applies
		}
		rec, _ := parseDMARC(name, found[0])
		return rec, nil
	}
	if rec, err := try(domain); rec != nil || err != nil {
		return rec, domain, err
	}
	labels := strings.Split(domain, ".")
	if len(labels) >= 8 {
		labels = labels[len(labels)-7:]
	} else {
		labels = labels[1:]
	}
	for len(labels) >= 1 && queries < maxTreeWalkQueries {
		name := strings.Join(labels, ".")
		if rec, err := try(name); rec != nil || err != nil {
			return rec, name, err
		}
		labels = labels[1:]
	}
	return nil, "", nil
}

// EffectivePolicy is the policy rec, found at at, applies to domain: its
// p for itself, else sp, or p when sp is absent (RFC 9989 §4.7).
func EffectivePolicy(rec *DMARCRecord, at, domain string) string {
	if at == domain || rec.SP == "" {
		return rec.P
	}
	return rec.SP
}
