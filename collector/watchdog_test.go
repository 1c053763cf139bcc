package collector

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestWatchdog: a reporter falls silent after max(2 × its usual interval,
// 48h), an expected reporter never seen after 48h, and both stay listed
// after a restart. The clock is the test's.
func TestWatchdog(t *testing.T) {
	dir := t.TempDir()
	now := testNow
	open := func() *Store {
		s := testStore(t, dir, "example.com")
		s.opts.Now = func() time.Time { return now }
		s.opts.ExpectedReporters = map[string][]string{"example.com": {"yahoo.com"}}
		return s
	}
	s := open()
	// Daily reports from Google, weekly ones from a small reporter.
	for i := range 5 {
		day := now.Add(-time.Duration(5-i) * 24 * time.Hour)
		s.IngestFile("src", fmt.Sprint("g", i), "m", bytes.NewReader(genReport("noreply@google.com", "example.com", fmt.Sprint("g", i), day, 1)))
		week := now.Add(-time.Duration(5-i) * 7 * 24 * time.Hour)
		s.IngestFile("src", fmt.Sprint("w", i), "m", bytes.NewReader(genReport("dmarc@weekly.example", "example.com", fmt.Sprint("w", i), week, 1)))
	}
	if err := s.Commit(); err != nil {
		t.Fatal(err)
	}
	check := func(s *Store, after time.Duration, want string) {
		t.Helper()
		now = testNow.Add(after)
		if err := testutil.CollectAndCompare(s, strings.NewReader(want), "dmarc_reporter_silent", "dmarc_reporter_expected_interval_seconds"); err != nil {
			t.Errorf("after %v: %v", after, err)
		}
	}
	metrics := func(google, weekly, yahoo int) string {
		return fmt.Sprintf(`
# HELP dmarc_reporter_expected_interval_seconds Usual interval between a reporter's reports for a domain: the median gap between the ends of its latest reports (1 day until two were seen).
# TYPE dmarc_reporter_expected_interval_seconds gauge
dmarc_reporter_expected_interval_seconds{domain="example.com",reporter="google.com"} 86400
dmarc_reporter_expected_interval_seconds{domain="example.com",reporter="weekly.example"} 604800
dmarc_reporter_expected_interval_seconds{domain="example.com",reporter="yahoo.com"} 86400
# HELP dmarc_reporter_silent 1 when a reporter has sent no report for a domain for longer than max(2 × its usual interval, 48h), or, when expected but never seen, for 48h since the state began; else 0.
# TYPE dmarc_reporter_silent gauge
dmarc_reporter_silent{domain="example.com",reporter="google.com"} %d
dmarc_reporter_silent{domain="example.com",reporter="weekly.example"} %d
dmarc_reporter_silent{domain="example.com",reporter="yahoo.com"} %d
`, google, weekly, yahoo)
	}
	check(s, time.Hour, metrics(0, 0, 0))
	check(s, 47*time.Hour, metrics(0, 0, 0))
	check(s, 49*time.Hour, metrics(1, 0, 1))
	check(s, 13*24*time.Hour, metrics(1, 0, 1))
	check(s, 15*24*time.Hour, metrics(1, 1, 1))
	// A restart keeps what the watchdog learned.
	check(open(), 15*24*time.Hour, metrics(1, 1, 1))
	check(open(), 47*time.Hour, metrics(0, 0, 0))
}

func TestExpectedInterval(t *testing.T) {
	day := int64(86400)
	for _, tt := range []struct {
		ends []int64
		want time.Duration
	}{
		{nil, 24 * time.Hour},
		{[]int64{day}, 24 * time.Hour},
		{[]int64{day, 2 * day, 3 * day, 10 * day}, 24 * time.Hour}, // one long gap does not move the median
		{[]int64{0, 7 * day, 14 * day}, 7 * 24 * time.Hour},
		{[]int64{0, 60}, time.Hour},                            // clamped
		{[]int64{0, 90 * day, 180 * day}, 30 * 24 * time.Hour}, // clamped
	} {
		if got := expectedInterval(tt.ends); got != tt.want {
			t.Errorf("expectedInterval(%v) = %v, want %v", tt.ends, got, tt.want)
		}
	}
}
