package report

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"
)

// SMTP TLS reports (RFC 8460): JSON, small (one per sending organisation,
// policy domain and day), decoded whole within Limits.MaxDecompressedBytes.
//
// Lenient where real reports need it: date-times without a time zone (read
// as UTC; Microsoft), "mx-host" as a string instead of an array (the RFC's
// own example, erratum 6235), TLSA policy strings holding a JSON array in a
// string (Microsoft), null or missing optional fields, unknown keys. Wrong:
// no report-id, no date-range or policies, a negative or fractional count,
// a range that begins after it ends.

// TLSReport is an SMTP TLS report.
type TLSReport struct {
	OrganizationName string            `json:"organization_name"`
	Begin            time.Time         `json:"begin"`
	End              time.Time         `json:"end"`
	ContactInfo      string            `json:"contact_info,omitempty"`
	ReportID         string            `json:"report_id"`
	Policies         []TLSPolicyResult `json:"policies"`
}

// TLSPolicyResult is the outcome of the sessions under one policy.
type TLSPolicyResult struct {
	Type    TLSPolicyType `json:"policy_type"`
	Strings []string      `json:"policy_strings,omitempty"`
	Domain  string        `json:"policy_domain"`
	MXHosts []string      `json:"mx_hosts,omitempty"`
	// Successful and Failed are the summary's session counts.
	Successful uint64       `json:"successful_sessions"`
	Failed     uint64       `json:"failed_sessions"`
	Failures   []TLSFailure `json:"failure_details,omitempty"`
}

// TLSFailure is one failure-details entry.
type TLSFailure struct {
	ResultType          TLSResultType `json:"result_type"`
	SendingMTAIP        string        `json:"sending_mta_ip,omitempty"`
	ReceivingMXHostname string        `json:"receiving_mx_hostname,omitempty"`
	ReceivingMXHelo     string        `json:"receiving_mx_helo,omitempty"`
	ReceivingIP         string        `json:"receiving_ip,omitempty"`
	FailedSessions      uint64        `json:"failed_sessions"`
	AdditionalInfo      string        `json:"additional_information,omitempty"`
	FailureReasonCode   string        `json:"failure_reason_code,omitempty"`
}

// TLSPolicyType is a policy-type (RFC 8460 §4.4).
type TLSPolicyType string

const (
	TLSPolicyTLSA          TLSPolicyType = "tlsa"
	TLSPolicySTS           TLSPolicyType = "sts"
	TLSPolicyNoPolicyFound TLSPolicyType = "no-policy-found"
	TLSPolicyOther         TLSPolicyType = "other"
)

// ParseTLSPolicyType maps a policy-type to the closed set.
func ParseTLSPolicyType(s string) TLSPolicyType {
	switch s = norm(s); s {
	case "tlsa", "sts", "no-policy-found":
		return TLSPolicyType(s)
	}
	return TLSPolicyOther
}

// TLSResultType is a failure result-type (RFC 8460 §4.3).
type TLSResultType string

// TLSResultTypes are the result types of RFC 8460 §4.3, then "other".
var TLSResultTypes = []TLSResultType{
	"starttls-not-supported", "certificate-host-mismatch", "certificate-expired", "certificate-not-trusted",
	"validation-failure", "tlsa-invalid", "dnssec-invalid", "dane-required", "sts-policy-fetch-error",
	"sts-policy-invalid", "sts-webpki-invalid", "other",
}

// ParseTLSResultType maps a result-type to the closed set.
func ParseTLSResultType(s string) TLSResultType { return oneOf(s, TLSResultTypes, "other") }

// The JSON as reporters write it.
type tlsReportJSON struct {
	OrganizationName string `json:"organization-name"`
	DateRange        *struct {
		Start string `json:"start-datetime"`
		End   string `json:"end-datetime"`
	} `json:"date-range"`
	ContactInfo *string `json:"contact-info"`
	ReportID    string  `json:"report-id"`
	Policies    []struct {
		Policy struct {
			Type    string          `json:"policy-type"`
			Strings stringOrStrings `json:"policy-string"`
			Domain  string          `json:"policy-domain"`
			MXHost  stringOrStrings `json:"mx-host"`
		} `json:"policy"`
		Summary struct {
			Successful json.Number `json:"total-successful-session-count"`
			Failed     json.Number `json:"total-failure-session-count"`
		} `json:"summary"`
		Failures []struct {
			ResultType          string      `json:"result-type"`
			SendingMTAIP        string      `json:"sending-mta-ip"`
			ReceivingMXHostname string      `json:"receiving-mx-hostname"`
			ReceivingMXHelo     string      `json:"receiving-mx-helo"`
			ReceivingIP         string      `json:"receiving-ip"`
			FailedSessions      json.Number `json:"failed-session-count"`
			AdditionalInfo      string      `json:"additional-information"`
			FailureReasonCode   string      `json:"failure-reason-code"`
		} `json:"failure-details"`
	} `json:"policies"`
}

// stringOrStrings reads a JSON string array, or a single string.
type stringOrStrings []string

func (s *stringOrStrings) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) > 0 && b[0] == '"' {
		var one string
		if err := json.Unmarshal(b, &one); err != nil {
			return err
		}
		*s = []string{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return err
	}
	*s = many
	return nil
}

// maxTLSItems bounds policies, failure details per policy and strings
// kept per report: at most 100 × 100 failure details.
const maxTLSItems = 100

// ParseTLSReport decodes an SMTP TLS report.
func ParseTLSReport(r io.Reader, lim Limits) (*TLSReport, error) {
	data, err := io.ReadAll(newLimitReader(r, maxTLSBytes, "SMTP TLS report"))
	if err != nil {
		return nil, fmt.Errorf("SMTP TLS report: %w", err)
	}
	// Count before decoding: a small document of many empty objects would
	// otherwise take gigabytes as structs.
	if err := checkJSONShape(data); err != nil {
		return nil, fmt.Errorf("SMTP TLS report: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var j tlsReportJSON
	if err := dec.Decode(&j); err != nil {
		var syn *json.SyntaxError
		var typ *json.UnmarshalTypeError
		switch {
		case errors.As(err, &syn):
			return nil, fmt.Errorf("SMTP TLS report: JSON offset %d: %v: %w", syn.Offset, syn, ErrInvalid)
		case errors.As(err, &typ) && typ.Field == "":
			return nil, fmt.Errorf("JSON %s, not an SMTP TLS report object: %w", typ.Value, ErrNoReport)
		case errors.As(err, &typ):
			return nil, fmt.Errorf("SMTP TLS report: %s is a JSON %s, not %s: %w", typ.Field, typ.Value, typ.Type, ErrInvalid)
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return nil, fmt.Errorf("SMTP TLS report: JSON ends early: truncated: %w", ErrInvalid)
		}
		return nil, fmt.Errorf("SMTP TLS report: %w", err)
	}
	if j.OrganizationName == "" && j.DateRange == nil && j.ReportID == "" && j.Policies == nil && j.ContactInfo == nil {
		// A JSON Schema, or any other JSON: none of a report's members.
		return nil, fmt.Errorf("JSON without organization-name, date-range, report-id or policies: not an SMTP TLS report: %w", ErrNoReport)
	}
	rep := &TLSReport{
		OrganizationName: strings.TrimSpace(j.OrganizationName),
		ReportID:         strings.TrimSpace(j.ReportID),
	}
	if j.ContactInfo != nil {
		rep.ContactInfo = strings.TrimSpace(*j.ContactInfo)
	}
	if rep.ReportID == "" {
		return nil, fmt.Errorf("SMTP TLS report has no report-id: %w", ErrInvalid)
	}
	if j.DateRange == nil {
		return nil, fmt.Errorf("SMTP TLS report has no date-range: %w", ErrInvalid)
	}
	if rep.Begin, err = parseTLSTime(j.DateRange.Start); err != nil {
		return nil, fmt.Errorf("SMTP TLS report: start-datetime: %w", err)
	}
	if rep.End, err = parseTLSTime(j.DateRange.End); err != nil {
		return nil, fmt.Errorf("SMTP TLS report: end-datetime: %w", err)
	}
	if rep.Begin.After(rep.End) {
		return nil, fmt.Errorf("SMTP TLS report: date-range begins after it ends: %w", ErrInvalid)
	}
	if len(j.Policies) == 0 {
		return nil, fmt.Errorf("SMTP TLS report has no policies: %w", ErrInvalid)
	}
	if len(j.Policies) > maxTLSItems {
		return nil, fmt.Errorf("SMTP TLS report has more than %d policies: %w", maxTLSItems, ErrLimit)
	}
	for i, p := range j.Policies {
		pr := TLSPolicyResult{
			Type:    ParseTLSPolicyType(p.Policy.Type),
			Strings: expandPolicyStrings(p.Policy.Strings),
			Domain:  normDomain(strings.TrimSpace(p.Policy.Domain)),
			MXHosts: boundStrings(p.Policy.MXHost),
		}
		if pr.Domain == "" {
			return nil, fmt.Errorf("SMTP TLS report: policies[%d] has no policy-domain: %w", i, ErrInvalid)
		}
		if pr.Successful, err = tlsCount(p.Summary.Successful, lim); err != nil {
			return nil, fmt.Errorf("SMTP TLS report: policies[%d]: total-successful-session-count: %w", i, err)
		}
		if pr.Failed, err = tlsCount(p.Summary.Failed, lim); err != nil {
			return nil, fmt.Errorf("SMTP TLS report: policies[%d]: total-failure-session-count: %w", i, err)
		}
		if len(p.Failures) > maxTLSItems {
			return nil, fmt.Errorf("SMTP TLS report: policies[%d] has more than %d failure details: %w", i, maxTLSItems, ErrLimit)
		}
		for k, f := range p.Failures {
			n, err := tlsCount(f.FailedSessions, lim)
			if err != nil {
				return nil, fmt.Errorf("SMTP TLS report: policies[%d].failure-details[%d]: failed-session-count: %w", i, k, err)
			}
			pr.Failures = append(pr.Failures, TLSFailure{
				ResultType:          ParseTLSResultType(f.ResultType),
				SendingMTAIP:        truncate(strings.TrimSpace(f.SendingMTAIP), 64),
				ReceivingMXHostname: truncate(strings.TrimSpace(f.ReceivingMXHostname), 255),
				ReceivingMXHelo:     truncate(strings.TrimSpace(f.ReceivingMXHelo), 255),
				ReceivingIP:         truncate(strings.TrimSpace(f.ReceivingIP), 64),
				FailedSessions:      n,
				AdditionalInfo:      truncate(f.AdditionalInfo, lim.MaxTextBytes),
				FailureReasonCode:   truncate(f.FailureReasonCode, lim.MaxTextBytes),
			})
		}
		rep.Policies = append(rep.Policies, pr)
	}
	return rep, nil
}

// maxTLSBytes bounds an SMTP TLS report; real ones are a few KB.
const maxTLSBytes = 4 << 20

// checkJSONShape refuses JSON with an array longer than maxTLSItems or
// nesting deeper than 16, reading tokens without building values.
func checkJSONShape(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	var counts []int // elements seen in each open array; -1 for objects
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return nil // the decoder proper reports syntax errors, with context
		}
		if n := len(counts); n > 0 && counts[n-1] >= 0 && tok != json.Delim(']') {
			if counts[n-1]++; counts[n-1] > maxTLSItems {
				return fmt.Errorf("an array has more than %d elements: %w", maxTLSItems, ErrLimit)
			}
		}
		switch tok {
		case json.Delim('['):
			counts = append(counts, 0)
		case json.Delim('{'):
			counts = append(counts, -1)
		case json.Delim(']'), json.Delim('}'):
			counts = counts[:len(counts)-1]
		}
		if len(counts) > 16 {
			return fmt.Errorf("JSON nested deeper than 16: %w", ErrLimit)
		}
	}
}

// parseTLSTime reads an RFC 3339 date-time; one without a zone is UTC.
func parseTLSTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999999", "2006-01-02 15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC(), nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date-time: %w", truncate(s, 40), ErrInvalid)
}

// tlsCount reads a session count: a non-negative integer within MaxCount.
func tlsCount(n json.Number, lim Limits) (uint64, error) {
	if n == "" {
		return 0, nil // a missing count is none
	}
	var v uint64
	if _, err := fmt.Sscan(string(n), &v); err != nil || fmt.Sprint(v) != string(n) {
		return 0, fmt.Errorf("%q is not a non-negative integer: %w", truncate(string(n), 40), ErrInvalid)
	}
	if v > lim.MaxCount {
		return 0, fmt.Errorf("%d larger than %d: %w", v, lim.MaxCount, ErrInvalid)
	}
	return v, nil
}

// expandPolicyStrings flattens policy strings; Microsoft writes a TLSA
// policy as one string holding a JSON array of records.
func expandPolicyStrings(in []string) []string {
	var out []string
	for _, s := range in {
		if t := strings.TrimSpace(s); strings.HasPrefix(t, "[") {
			var inner []string
			if json.Unmarshal([]byte(t), &inner) == nil {
				out = append(out, inner...)
				continue
			}
		}
		out = append(out, s)
	}
	return boundStrings(out)
}

func boundStrings(in []string) []string {
	if len(in) > maxTLSItems {
		in = in[:maxTLSItems]
	}
	for i, s := range in {
		in[i] = truncate(s, 1024)
	}
	return in
}
