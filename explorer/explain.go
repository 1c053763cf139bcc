package explorer

import (
	"fmt"
	"strings"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
)

// explain says in one line why a record has its status: what passed,
// for which domain, and the likely cause, from the record's own results
// (the reporter's view, as stored: nothing is looked up).
func explain(r *archive.RecordRow, adkim, aspf string) string {
	if r.Problem != "" && strings.HasPrefix(r.Problem, "count") {
		return "Not counted: " + r.Problem
	}
	from := strings.ToLower(strings.TrimSuffix(r.HeaderFrom, "."))
	aligned := func(d, mode string) bool {
		d = strings.ToLower(strings.TrimSuffix(d, "."))
		if d == "" || from == "" {
			return false
		}
		if mode == "s" {
			return d == from
		}
		return d == from || enrich.RegistrableDomain(d) == enrich.RegistrableDomain(from)
	}
	var dkimOwn, dkimOwnBroken, dkimOther string
	for _, d := range r.DKIMResults {
		switch {
		case aligned(d.Domain, adkim) && d.Result == "pass":
			dkimOwn = d.Domain
		case aligned(d.Domain, adkim) && dkimOwnBroken == "":
			dkimOwnBroken = d.Domain + " (" + string(d.Result) + ")"
		case d.Result == "pass" && dkimOther == "":
			dkimOther = d.Domain
		}
	}
	var spfOwn, spfOther, spfFailed string
	for _, p := range r.SPFResults {
		if p.Scope == "helo" && len(r.SPFResults) > 1 {
			continue
		}
		switch {
		case p.Result == "pass" && aligned(p.Domain, aspf):
			spfOwn = p.Domain
		case p.Result == "pass" && spfOther == "":
			spfOther = p.Domain
		case p.Result != "pass" && spfFailed == "":
			spfFailed = fmt.Sprintf("%s for %s", p.Result, orUnknown(p.Domain))
		}
	}

	var dkim, spf string
	switch {
	case r.DKIM == "pass" || dkimOwn != "":
		dkim = "DKIM passed"
	case dkimOwnBroken != "":
		dkim = "DKIM signature of your domain did not verify, " + dkimOwnBroken + ": the message was changed on the way"
	case dkimOther != "":
		dkim = "DKIM signed by " + dkimOther + ", not your domain"
	case len(r.DKIMResults) == 0:
		dkim = "DKIM missing"
	default:
		dkim = "DKIM " + string(r.DKIMResults[0].Result) + " for " + orUnknown(r.DKIMResults[0].Domain)
	}
	switch {
	case r.SPF == "pass" || spfOwn != "":
		spf = "SPF passed"
	case spfOther != "":
		spf = "SPF passed for " + spfOther + ", not your domain"
	case spfFailed != "":
		spf = "SPF " + spfFailed
	default:
		spf = "SPF missing"
	}

	var cause string
	forwarded := r.Source.Class == string(enrich.ClassForwarded)
	for _, reason := range r.Reasons {
		switch reason.Type {
		case "forwarded", "trusted_forwarder":
			forwarded = true
		case "mailing_list":
			cause = "a mailing list"
		}
	}
	switch r.Status {
	case archive.RecordPassed:
		return "DKIM and SPF passed, aligned with " + orUnknown(from)
	case archive.RecordPartial:
		if r.DKIM == "pass" {
			if spfOther != "" || spfFailed != "" {
				cause = "likely forwarding, or an address missing from SPF"
			}
			return join(dkim, spf, cause)
		}
		return join(spf, dkim, "sign this source's mail with your domain's DKIM key")
	}
	switch {
	case dkimOwn != "" || spfOwn != "":
		// The auth results pass for the From domain, yet the evaluation
		// failed: the reporter contradicts itself.
		return join(dkim, spf, "yet the reporter evaluated DMARC as failed: its report contradicts its own results (a reporter's quirk)")
	case cause != "":
	case r.Source.Class == string(enrich.ClassMailingList):
		cause = "a mailing list"
	case forwarded || (spfOther != "" && dkimOther == "" && dkimOwnBroken == "" && len(r.DKIMResults) == 0):
		if spfOther != "" {
			spf = "SPF passed for " + spfOther + " (the forwarder's domain?), not yours"
		}
		cause = "likely forwarding"
	case dkimOwnBroken != "":
		cause = "forwarded with changes, or a mailing list"
	case dkimOther != "" || spfOther != "":
		cause = "a service sending as you without your DKIM key or SPF, or spoofing"
	case r.Source.Class == string(enrich.ClassThreat):
		cause = "a known threat: spoofing"
	default:
		cause = "not authorised by you: spoofing, or a sender missing from SPF and DKIM"
	}
	return join(spf, dkim, cause)
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
