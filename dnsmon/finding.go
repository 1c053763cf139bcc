package dnsmon

// Severity of a finding.
type Severity string

const (
	SeverityOK      Severity = "ok"
	SeverityWarning Severity = "warning"
	SeverityError   Severity = "error"
)

// A Finding is one statement about a domain's records, for a person
// (`dmarc-exporter check`) or a metric label (Code, from a fixed set).
type Finding struct {
	Domain   string   `json:"domain"`
	Record   string   `json:"record"` // dmarc, spf, dkim, mta-sts, tlsrpt, bimi
	Severity Severity `json:"severity"`
	Code     string   `json:"code"`
	Message  string   `json:"message"`
}
