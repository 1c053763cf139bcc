package explorer

import (
	"fmt"
	"net/url"
	"testing"
	"time"
)

func TestParseQuery(t *testing.T) {
	v, _ := url.ParseQuery("domain=Example.com&domain=example.org&reporter=google.com&from=2024-01-01&to=2024-01-31&status=failed&dmarc=mixed&class=unknown&asn=AS15169&sort=messages&order=asc&page=3&per_page=20")
	q, err := ParseQuery(v)
	if err != nil {
		t.Fatal(err)
	}
	if q.Domains[0] != "example.com" || len(q.Domains) != 2 || q.Reporters[0] != "google.com" {
		t.Errorf("domains %v, reporters %v", q.Domains, q.Reporters)
	}
	if !q.From.Equal(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)) || !q.Until.Equal(time.Date(2024, 2, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("period %v to %v: to is inclusive", q.From, q.Until)
	}
	if q.Status != "failed" || q.DMARC != "mixed" || q.Class != "unknown" || q.ASN == nil || *q.ASN != 15169 || q.Name != nil || q.Sort != "messages" || q.Desc ||
		q.Page != 3 || q.PerPage != 20 || q.Offset() != 40 {
		t.Errorf("parsed %+v", q)
	}
	// Written back, the query reads the same.
	again, err := ParseQuery(q.values(true))
	if err != nil || again.values(true).Encode() != q.values(true).Encode() {
		t.Errorf("round trip: %v %v", again.values(true).Encode(), err)
	}

	// Grafana's ${__from} and ${__to} are Unix milliseconds.
	v, _ = url.ParseQuery("from=1704067200000&to=1704153600000")
	if q, err = ParseQuery(v); err != nil || q.From.Unix() != 1704067200 || q.Until.Unix() != 1704153600 {
		t.Errorf("milliseconds: %v to %v, %v", q.From, q.Until, err)
	}
	// The date fields show them as days, which read back the same.
	if q.FromArg != "2024-01-01" || q.ToArg != "2024-01-01" {
		t.Errorf("milliseconds shown as %s to %s, want 2024-01-01 to 2024-01-01", q.FromArg, q.ToArg)
	}
	if again, err := ParseQuery(q.values(true)); err != nil || !again.From.Equal(q.From) || !again.Until.Equal(q.Until) {
		t.Errorf("milliseconds written back read as %v to %v (%v)", again.From, again.Until, err)
	}
	v, _ = url.ParseQuery("month=2024-02")
	if q, err = ParseQuery(v); err != nil || q.From.Month() != 2 || q.Until.Month() != 3 {
		t.Errorf("month: %v to %v, %v", q.From, q.Until, err)
	}

	// Grafana's source_asn labels: unknown is AS 0; other (the overflow
	// bucket) selects no AS in particular.
	for raw, want := range map[string]string{"asn=unknown": "0", "asn=invalid": "0", "asn=other": "any", "asn=AS64500": "64500",
		"name=": "name ''", "name=other": "any", "name=mx.example": "name 'mx.example'"} {
		v, _ := url.ParseQuery(raw)
		q, err := ParseQuery(v)
		got := "any"
		switch {
		case err != nil:
			got = err.Error()
		case q.ASN != nil:
			got = fmt.Sprint(*q.ASN)
		case q.Name != nil:
			got = "name '" + *q.Name + "'"
		}
		if got != want {
			t.Errorf("%s: %s, want %s", raw, got, want)
		}
	}

	for _, bad := range []string{"status=bogus", "dmarc=x", "from=yesterday", "month=2024", "asn=google", "sort=identity", "page=0", "per_page=100000"} {
		v, _ := url.ParseQuery(bad)
		if _, err := ParseQuery(v); err == nil {
			t.Errorf("%s: accepted", bad)
		}
	}
}

func TestPeriod(t *testing.T) {
	day := time.Date(2024, 3, 31, 0, 0, 0, 0, time.UTC)
	for _, c := range []struct {
		begin, end time.Time
		want       string
	}{
		{day, day.Add(24*time.Hour - time.Second), "2024-03-31"},
		{day, day.Add(24 * time.Hour), "2024-03-31"},
		{day, day.Add(48 * time.Hour), "2024-03-31 – 2024-04-01"},
		{day.Add(6 * time.Hour), day.Add(30 * time.Hour), "2024-03-31 – 2024-04-01"},
	} {
		if got := period(c.begin, c.end); got != c.want {
			t.Errorf("period(%v, %v) = %q, want %q", c.begin, c.end, got, c.want)
		}
	}
}
