package explorer

import (
	"strings"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
)

// explain says in one line why a record has its status: what passed,
// for which domain, and the likely cause, from the record's own results
// (the reporter's view, as stored: nothing is looked up). adkim and aspf
// are the alignment modes the reporter saw ("s" strict, else relaxed).
func explain(r *archive.RecordRow, adkim, aspf string) string {
	if strings.HasPrefix(r.Problem, "count") {
		return "Not counted: " + r.Problem
	}
	from := normDomain(r.HeaderFrom)
	// sameOrg is relaxed alignment: the same organisational domain. A
	// domain outside the public suffix list aligns only with itself.
	sameOrg := func(d string) bool {
		if d == "" || from == "" {
			return false
		}
		if d == from {
			return true
		}
		org := enrich.RegistrableDomain(d)
		return org != "" && org == enrich.RegistrableDomain(from)
	}
	aligned := func(d, mode string) bool {
		if mode == "s" {
			return d != "" && d == from
		}
		return sameOrg(d)
	}

	var dkimOwn bool
	var dkimStrict, dkimBroken, dkimKey, dkimTemp, dkimOther string
	for _, res := range r.DKIMResults {
		d := normDomain(res.Domain)
		switch {
		case res.Result == "pass" && aligned(d, adkim):
			dkimOwn = true
		case res.Result == "pass" && sameOrg(d):
			dkimStrict = first(dkimStrict, d)
		case res.Result == "pass":
			dkimOther = first(dkimOther, d)
		case !sameOrg(d):
		case res.Result == "permerror":
			dkimKey = first(dkimKey, d)
		case res.Result == "temperror":
			dkimTemp = first(dkimTemp, d)
		default:
			dkimBroken = first(dkimBroken, d+" ("+string(res.Result)+")")
		}
	}
	// DMARC checks SPF for the MAIL FROM; HELO only stands in when no
	// MAIL FROM result is given.
	var spfOwn bool
	var spfStrict, spfOther, spfFailed string
	spf := r.SPFResults
	if hasMailFrom(r) {
		spf = nil
		for _, res := range r.SPFResults {
			if res.Scope != "helo" {
				spf = append(spf, res)
			}
		}
	}
	for _, res := range spf {
		d := normDomain(res.Domain)
		switch {
		case res.Result == "pass" && aligned(d, aspf):
			spfOwn = true
		case res.Result == "pass" && sameOrg(d):
			spfStrict = first(spfStrict, d)
		case res.Result == "pass":
			spfOther = first(spfOther, d)
		default:
			spfFailed = first(spfFailed, string(res.Result)+" for "+orUnknown(d))
		}
	}

	var dkimText, spfText string
	switch {
	case r.DKIM == "pass" || dkimOwn:
		dkimText = "DKIM passed"
	case dkimStrict != "":
		dkimText = "DKIM signed by " + dkimStrict + ", not aligned under strict alignment (adkim=s)"
	case dkimKey != "":
		dkimText = "DKIM of " + dkimKey + " could not be checked (permerror): its key is missing or broken in DNS"
	case dkimTemp != "":
		dkimText = "DKIM of " + dkimTemp + " could not be checked (temperror): a DNS failure at the receiver"
	case dkimBroken != "":
		dkimText = "DKIM signature of your domain did not verify, " + dkimBroken + ": the message was changed on the way"
	case dkimOther != "":
		dkimText = "DKIM signed by " + dkimOther + ", not your domain"
	case len(r.DKIMResults) == 0:
		dkimText = "DKIM missing"
	default:
		dkimText = "DKIM " + string(r.DKIMResults[0].Result) + " for " + orUnknown(r.DKIMResults[0].Domain)
	}
	switch {
	case r.SPF == "pass" || spfOwn:
		spfText = "SPF passed"
	case spfStrict != "":
		spfText = "SPF passed for " + spfStrict + ", not aligned under strict alignment (aspf=s)"
	case spfOther != "":
		spfText = "SPF passed for " + spfOther + ", not your domain"
	case spfFailed != "":
		spfText = "SPF " + spfFailed
	default:
		spfText = "SPF missing"
	}

	forwarded := r.Source.Class == string(enrich.ClassForwarded)
	list := r.Source.Class == string(enrich.ClassMailingList)
	for _, reason := range r.Reasons {
		switch reason.Type {
		case "forwarded", "trusted_forwarder":
			forwarded = true
		case "mailing_list":
			list = true
		}
	}
	switch r.Status {
	case archive.RecordPassed:
		return "DKIM and SPF passed, aligned with " + orUnknown(from)
	case archive.RecordPartial:
		if r.DKIM == "pass" {
			var cause string
			switch {
			case forwarded:
				cause = "forwarding"
			case spfOther != "":
				cause = "a sending service's own return path (a bounce domain under yours would align SPF), or forwarding"
			case spfFailed != "":
				cause = "likely forwarding, or this address is missing from SPF"
			}
			return join(dkimText, spfText, cause)
		}
		var cause string
		switch {
		case dkimStrict != "" || dkimKey != "" || dkimTemp != "" || dkimBroken != "":
		case dkimOther != "":
			cause = "have the service sign with your domain's DKIM key"
		default:
			cause = "sign this source's mail with your domain's DKIM key"
		}
		return join(spfText, dkimText, cause)
	}
	var cause string
	switch {
	case dkimOwn || spfOwn:
		// The auth results pass for the From domain, yet the evaluation
		// failed: the reporter contradicts itself.
		cause = "yet the reporter evaluated DMARC as failed: its report contradicts its own results (a reporter's quirk)"
	case list:
		cause = "a mailing list"
	case forwarded:
		cause = "forwarding"
	case dkimStrict != "" || spfStrict != "":
		cause = "relaxed alignment (adkim=r, aspf=r) would pass"
	case dkimBroken != "":
		cause = "forwarded with changes, or a mailing list"
	case dkimKey != "":
		cause = "publish or fix the DKIM key in DNS"
	case spfOther != "" && dkimOther == "":
		if len(r.DKIMResults) == 0 {
			spfText = "SPF passed for " + spfOther + " (a forwarder's or a service's domain?), not yours"
		}
		cause = "likely forwarding, or a service sending as you with its own return path and without your DKIM key"
	case dkimOther != "":
		cause = "a service sending as you without your DKIM key, or spoofing"
	case r.Source.Class == string(enrich.ClassThreat):
		cause = "a known threat: spoofing"
	default:
		cause = "not authorised by you: spoofing, or a sender missing from SPF and DKIM"
	}
	if dkimOwn || spfOwn {
		return join(dkimText, spfText, cause)
	}
	return join(spfText, dkimText, cause)
}

// hasMailFrom tells whether a record has an SPF result for the MAIL FROM
// (or one without a scope, as RFC 7489 reports often give it).
func hasMailFrom(r *archive.RecordRow) bool {
	for _, res := range r.SPFResults {
		if res.Scope != "helo" {
			return true
		}
	}
	return false
}

func normDomain(s string) string {
	return strings.ToLower(strings.TrimSuffix(strings.TrimSpace(s), "."))
}

func first(have, s string) string {
	if have != "" {
		return have
	}
	return s
}

func join(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	s := strings.Join(out, "; ")
	if s != "" {
		s = strings.ToUpper(s[:1]) + s[1:]
	}
	return s
}

func orUnknown(s string) string {
	if s == "" {
		return "(no domain)"
	}
	return s
}
