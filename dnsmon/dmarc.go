package dnsmon

import (
	"context"
	"fmt"
	"net/url"
	"strings"

	"golang.org/x/net/publicsuffix"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
)

// DMARCRecord is a parsed DMARC policy record (RFC 9989 §4.7; RFC 7489
// §6.3 for the tags DMARCbis dropped, pct and ri, which are read but not
// judged).
type DMARCRecord struct {
	Raw         string
	P, SP, NP   string // none, quarantine, reject; "" when absent
	ADKIM, ASPF string // r or s; default r
	Testing     bool   // t=y
	PSD         string // y, n, u; default u
	FO          string
	RUA, RUF    []string // URIs as written
	Pct         string
}

// parseDMARC parses a record that starts with v=DMARC1. Problems are
// returned as findings; the record is nil when it cannot be used at all.
func parseDMARC(domain, raw string) (*DMARCRecord, []Finding) {
	find := func(sev Severity, code, format string, args ...any) Finding {
		return Finding{Domain: domain, Record: "dmarc", Severity: sev, Code: code, Message: fmt.Sprintf(format, args...)}
	}
	var out []Finding
	rec := &DMARCRecord{Raw: raw, ADKIM: "r", ASPF: "r", PSD: "u"}
	tags := strings.Split(raw, ";")
	for i, tag := range tags {
		tag = strings.TrimSpace(tag)
		if tag == "" {
			continue
		}
		k, v, ok := strings.Cut(tag, "=")
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.TrimSpace(v)
		if !ok {
			out = append(out, find(SeverityError, "syntax", "tag %q has no value", truncate(tag, 40)))
			continue
		}
		if i == 0 {
			if !isDMARCRecord(tag) {
				return nil, append(out, find(SeverityError, "syntax", "record does not start with v=DMARC1"))
			}
			continue
		}
		lv := strings.ToLower(v)
		switch k {
		case "p", "sp", "np":
			if lv != "none" && lv != "quarantine" && lv != "reject" {
				out = append(out, find(SeverityError, "syntax", "%s=%s is not none, quarantine or reject", k, truncate(v, 20)))
				continue
			}
			switch k {
			case "p":
				rec.P = lv
			case "sp":
				rec.SP = lv
			case "np":
				rec.NP = lv
			}
		case "adkim", "aspf":
			if lv != "r" && lv != "s" {
				out = append(out, find(SeverityError, "syntax", "%s=%s is not r or s", k, truncate(v, 20)))
				continue
			}
			if k == "adkim" {
				rec.ADKIM = lv
			} else {
				rec.ASPF = lv
			}
		case "t":
			rec.Testing = lv == "y"
			if lv != "y" && lv != "n" {
				out = append(out, find(SeverityError, "syntax", "t=%s is not y or n", truncate(v, 20)))
			}
		case "psd":
			if lv != "y" && lv != "n" && lv != "u" {
				out = append(out, find(SeverityError, "syntax", "psd=%s is not y, n or u", truncate(v, 20)))
				continue
			}
			rec.PSD = lv
		case "fo":
			rec.FO = v
		case "pct":
			rec.Pct = v
		case "rua", "ruf":
			var uris []string
			for _, u := range strings.Split(v, ",") {
				if u = strings.TrimSpace(u); u != "" {
					uris = append(uris, u)
				}
			}
			if k == "rua" {
				rec.RUA = uris
			} else {
				rec.RUF = uris
			}
		}
		// Other tags (ri, and tags of later specifications) are ignored,
		// as RFC 9989 §4.7 says.
	}
	hasRUA := false
	for _, u := range rec.RUA {
		_, ok := mailtoHost(u)
		hasRUA = hasRUA || ok
	}
	switch {
	case rec.P == "" && hasRUA:
		// RFC 7489 §6.6.3: no valid policy but a valid rua: p=none.
		rec.P = "none"
		out = append(out, find(SeverityWarning, "no_policy", "no valid p= tag: with a rua=, receivers treat the domain as p=none"))
	case rec.P == "":
		// Without a policy or a report address the record is not used.
		return nil, append(out, find(SeverityError, "no_policy", "no valid p= tag and no rua=: receivers ignore the record"))
	case rec.P == "none":
		out = append(out, find(SeverityWarning, "policy_none", "p=none: failing mail is only monitored, not refused"))
	}
	if rec.Testing {
		out = append(out, find(SeverityWarning, "testing", "t=y: receivers apply one step less than the policy"))
	}
	if len(rec.RUA) == 0 {
		out = append(out, find(SeverityWarning, "no_rua", "no rua= address: no aggregate reports are sent"))
	}
	return rec, out
}

// CheckDMARC fetches and judges the DMARC record of domain, including the
// authorisation of external report destinations (RFC 9989 §3.6; RFC 7489
// §7.1): an unauthorised rua silently gets no reports.
func CheckDMARC(ctx context.Context, r *dnsclient.Resolver, domain string) (*DMARCRecord, []Finding) {
	find := func(sev Severity, code, format string, args ...any) Finding {
		return Finding{Domain: domain, Record: "dmarc", Severity: sev, Code: code, Message: fmt.Sprintf(format, args...)}
	}
	records, err := dmarcRecords(ctx, r, domain)
	if err != nil {
		return nil, []Finding{find(SeverityError, "lookup_error", "lookup of _dmarc.%s failed: %v", domain, err)}
	}
	switch len(records) {
	case 0:
		rec, at, err := TreeWalk(ctx, r, domain)
		if err != nil {
			return nil, []Finding{find(SeverityError, "lookup_error", "no record at _dmarc.%s, and the walk up the tree failed: %v", domain, err)}
		}
		if rec != nil {
			p := EffectivePolicy(rec, at, domain)
			sev := SeverityOK
			if p == "none" || p == "" {
				sev = SeverityWarning
			}
			return rec, []Finding{find(sev, "inherited", "no record of its own: _dmarc.%s applies (RFC 9989 tree walk), policy %s", at, p)}
		}
		return nil, []Finding{find(SeverityError, "missing", "no DMARC record at _dmarc.%s, nor above it", domain)}
	case 1:
	default:
		return nil, []Finding{find(SeverityError, "multiple_records", "%d DMARC records at _dmarc.%s: receivers use none of them", len(records), domain)}
	}
	rec, out := parseDMARC(domain, records[0])
	if rec == nil {
		return nil, out
	}
	out = append(out, checkDestinations(ctx, r, domain, rec)...)
	if len(out) == 0 {
		out = append(out, find(SeverityOK, "ok", "p=%s", rec.P))
	}
	return rec, out
}

// maxDestinations bounds the report hosts whose authorisation is checked.
const maxDestinations = 10

// dmarcRecords returns the DMARC records at _dmarc.domain: the TXT records
// that start with v=DMARC1.
func dmarcRecords(ctx context.Context, r *dnsclient.Resolver, domain string) ([]string, error) {
	txts, err := r.TXT(ctx, "_dmarc."+domain)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, t := range txts {
		if isDMARCRecord(t) {
			out = append(out, strings.TrimSpace(t))
		}
	}
	return out, nil
}

// isDMARCRecord: the first tag is v=DMARC1, white space allowed around "="
// (RFC 9989's tag-value grammar); the value is case-sensitive.
func isDMARCRecord(t string) bool {
	first, _, _ := strings.Cut(strings.TrimSpace(t), ";")
	k, v, ok := strings.Cut(first, "=")
	return ok && strings.TrimSpace(k) == "v" && strings.TrimSpace(v) == "DMARC1"
}

// checkDestinations checks that the external rua and ruf destinations of a
// record authorise reports for domain (RFC 9989 §3.6; RFC 7489 §7.1): an
// unauthorised destination silently gets no reports.
func checkDestinations(ctx context.Context, r *dnsclient.Resolver, domain string, rec *DMARCRecord) []Finding {
	find := func(sev Severity, code, format string, args ...any) Finding {
		return Finding{Domain: domain, Record: "dmarc", Severity: sev, Code: code, Message: fmt.Sprintf(format, args...)}
	}
	var out []Finding
	checked := map[string]bool{}
	for _, tag := range []struct {
		name string
		uris []string
	}{{"rua", rec.RUA}, {"ruf", rec.RUF}} {
		for _, u := range tag.uris {
			host, ok := mailtoHost(u)
			if !ok {
				out = append(out, find(SeverityError, "syntax", "%s=%s is not a mailto: URI", tag.name, truncate(u, 60)))
				continue
			}
			if checked[host] {
				continue
			}
			if len(checked) >= maxDestinations {
				out = append(out, find(SeverityWarning, "too_many_destinations", "more than %d report destinations: the rest are not checked (receivers need handle only 2)", maxDestinations))
				return out
			}
			checked[host] = true
			if sameOrganization(host, domain) {
				continue // the same Organizational Domain: no authorisation needed
			}
			auth, err := r.TXT(ctx, domain+"._report._dmarc."+host)
			if err != nil {
				out = append(out, find(SeverityWarning, "lookup_error", "could not check that %s accepts reports for %s: %v", host, domain, err))
				continue
			}
			ok = false
			for _, a := range auth {
				ok = ok || strings.HasPrefix(strings.TrimSpace(a), "v=DMARC1")
			}
			if !ok {
				out = append(out, find(SeverityError, "unauthorized_destination",
					"%s=%s: %s does not authorise reports for %s (no v=DMARC1 record at %s._report._dmarc.%s): it gets none",
					tag.name, truncate(u, 60), host, domain, domain, host))
			}
		}
	}
	return out
}

// sameOrganization reports whether two domains share their
// Organizational Domain, approximated by the public suffix list.
func sameOrganization(a, b string) bool {
	if a == b || strings.HasSuffix(a, "."+b) || strings.HasSuffix(b, "."+a) {
		return true
	}
	oa, err1 := publicsuffix.EffectiveTLDPlusOne(a)
	ob, err2 := publicsuffix.EffectiveTLDPlusOne(b)
	return err1 == nil && err2 == nil && oa == ob
}

// mailtoHost returns the domain of a mailto: URI (with an optional size
// limit suffix "!10m").
func mailtoHost(u string) (string, bool) {
	if i := strings.LastIndexByte(u, '!'); i >= 0 {
		u = u[:i]
	}
	p, err := url.Parse(u)
	if err != nil || !strings.EqualFold(p.Scheme, "mailto") {
		return "", false
	}
	at := strings.LastIndexByte(p.Opaque, '@')
	if at < 0 {
		return "", false
	}
	return strings.ToLower(strings.TrimSuffix(p.Opaque[at+1:], ".")), true
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
