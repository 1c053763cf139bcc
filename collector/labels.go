package collector

import (
	"strings"

	"golang.org/x/net/publicsuffix"
)

// Label values from reports are hostile: anyone can mail the rua address.
// Every value is reduced to a small character set and a bounded length
// here, and the number of distinct values is capped where it is used
// (Store.domainLabel, Store.reporterLabel).

// otherLabel is the value that stands for everything over a cap.
const otherLabel = "other"

// sanitize keeps [a-z0-9._-], maps runs of anything else to one "_", and
// bounds the length. An empty result is "unknown".
func sanitize(s string, max int) string {
	var b strings.Builder
	underscore := false
	for _, c := range strings.ToLower(strings.TrimSpace(s)) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_' {
			b.WriteRune(c)
			underscore = false
		} else if !underscore {
			b.WriteByte('_')
			underscore = true
		}
		if b.Len() >= max {
			break
		}
	}
	out := strings.Trim(b.String(), "_.")
	if len(out) > max {
		out = out[:max]
	}
	if out == "" {
		return "unknown"
	}
	return out
}

// ReporterName derives the reporter label of a report: the registrable
// domain (public suffix + 1) of the report_metadata email address, so that
// noreply-dmarc-support@google.com is "google.com" and
// no-reply@uk-1.mimecastreport.com is "mimecastreport.com"; failing that,
// the org_name; failing both, "unknown".
func ReporterName(email, orgName string, max int) string {
	if at := strings.LastIndexByte(email, '@'); at >= 0 {
		host := strings.ToLower(strings.Trim(email[at+1:], " <>\t."))
		if i := strings.IndexAny(host, " >;,?"); i >= 0 {
			host = host[:i]
		}
		if etld1, err := publicsuffix.EffectiveTLDPlusOne(host); err == nil && validHost(etld1) {
			return sanitize(etld1, max)
		}
	}
	if strings.TrimSpace(orgName) != "" {
		return sanitize(orgName, max)
	}
	return "unknown"
}

func validHost(s string) bool {
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return strings.Contains(s, ".")
}
