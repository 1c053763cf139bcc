package report

import (
	"errors"
	"strings"
	"testing"
)

// TestTLSReportLimits: many small items are refused before they are decoded.
func TestTLSReportLimits(t *testing.T) {
	head := `{"report-id":"x","date-range":{"start-datetime":"2020-01-01T00:00:00Z","end-datetime":"2020-01-01T00:00:00Z"},` +
		`"policies":[{"policy":{"policy-type":"sts","policy-domain":"a.example"},"failure-details":[`
	in := head + strings.Repeat(`{},`, maxTLSItems) + `{}]}]}`
	_, err := ParseTLSReport(strings.NewReader(in), DefaultLimits())
	if !errors.Is(err, ErrLimit) || !strings.Contains(err.Error(), "an array has more than 100 elements") {
		t.Fatalf("error %v", err)
	}
	deep := head + strings.Repeat("[", 20) + strings.Repeat("]", 20) + `]}]}`
	if _, err := ParseTLSReport(strings.NewReader(deep), DefaultLimits()); !errors.Is(err, ErrLimit) {
		t.Fatalf("deep nesting: %v", err)
	}
}
