package collector

import (
	"io"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// family is one metric the Store serves. The families are listed once,
// here, and served two ways from the same enumeration (visit): as a
// prometheus.Collector, and as text written straight to /metrics, which
// scrapes a million series in well under a second where the Collector path
// of client_golang takes many.
type family struct {
	name, help string
	counter    bool
	// stored families are counters kept in totals (and the archive's
	// totals table) and served from there; the others are computed at
	// each scrape from the watchdog's, the DNS monitor's or the store's
	// own state.
	stored bool
	labels []string
	desc   *prometheus.Desc
}

func newFamily(name, help string, counter bool, labels ...string) *family {
	return &family{name: name, help: help, counter: counter, labels: labels,
		desc: prometheus.NewDesc(name, help, labels, nil)}
}

// newStored declares a counter family kept in totals: declared here and
// incremented where it is counted, it needs nothing else to be saved,
// loaded and served.
func newStored(name, help string, labels ...string) *family {
	f := newFamily(name, help, true, labels...)
	f.stored = true
	return f
}

// The metrics of the Store. Counters grow when a report is ingested, not
// during the day the report describes.
var (
	messagesFamily = newStored("dmarc_messages_total",
		"Messages reported in DMARC aggregate reports (the sum of record counts), by protected domain, reporter, applied disposition, DMARC result and policy-evaluated (aligned) DKIM and SPF results. Grows when a report is ingested.",
		"domain", "reporter", "disposition", "dmarc", "dkim", "spf")
	reportsFamily = newStored("dmarc_reports_total",
		"Aggregate reports ingested, by protected domain and reporter.",
		"domain", "reporter")
	domainReportsFamily = newStored("dmarc_domain_reports_total",
		"Aggregate reports ingested per protected domain; present at 0 for every configured domain from the first scrape.",
		"domain")
	duplicatesFamily = newStored("dmarc_reports_duplicate_total",
		"Aggregate reports received again (same reporter, report_id, date range and policy domain) and not counted twice.",
		"domain", "reporter")
	rejectedFamily = newStored("dmarc_reports_rejected_total",
		"Inputs or reports refused, by source and reason (malformed, no_report, too_large, not_auth_failure, domain_not_monitored).",
		"source", "reason")
	invalidRecordsFamily = newStored("dmarc_records_invalid_total",
		"Records with a wrong value, by reason: count (missing, negative, not a number or implausible: the record's messages are not counted) or source_ip (missing or unreadable: its messages are counted, with source identity invalid).",
		"domain", "reporter", "reason")
	repairedFamily = newStored("dmarc_reports_repaired_total",
		"Aggregate reports counted in spite of a fault the parser mended, by repair: invalid_bytes (bytes of text not in the report's encoding, read as U+FFFD), stray_start_tag (an unclosed element before <feedback>, dropped).",
		"domain", "reporter", "repair")
	overridesFamily = newStored("dmarc_policy_override_messages_total",
		"Messages whose disposition the receiver overrode, by reason (forwarded, sampled_out, trusted_forwarder, mailing_list, local_policy, policy_test_mode, other).",
		"domain", "reporter", "reason")
	sourcesFamily = newStored("dmarc_source_messages_total",
		"Messages reported in DMARC aggregate reports by who sent them: the source address's AS number and organisation, country, name (known sender, else the registrable domain of its forward-confirmed name) and class (authorized, forwarded, mailing_list, misconfigured, unknown, threat), with the applied disposition and DMARC result. unknown where no database or name says.",
		"domain", "source_asn", "source_org", "source_country", "source_name", "source_class", "disposition", "dmarc")
	lastEndFamily = newFamily("dmarc_report_end_timestamp_seconds",
		"End of the date range of the newest report ingested, by domain and reporter (a range ending in the future counts as ending at ingest).",
		false, "domain", "reporter")
	anomaliesFamily = newStored("dmarc_report_date_range_anomalies_total",
		"Reports whose date range is odd: kind=future (ends over a day after ingest), old (ended over 90 days before ingest), long (spans over 7 days). They are counted all the same.",
		"domain", "reporter", "kind")
	overflowFamily = newStored("dmarc_exporter_label_overflow_total",
		"Reports whose label value was replaced by \"other\" because the label reached its cap of distinct values.",
		"label")
	dedupKeysFamily = newFamily("dmarc_exporter_dedup_keys",
		"Report identities remembered (for state.dedup_retention) to refuse duplicates.", false)
	lastSaveFamily = newFamily("dmarc_exporter_state_last_write_timestamp_seconds",
		"When the archive was last written successfully; 0 if not since start.", false)
	recreatedFamily = newFamily("dmarc_exporter_archive_recreated_total",
		"Times since start the archive file was found deleted while in use and written anew from the open database (nothing is lost; find out what deletes it).", true)
	saveErrorsFamily = newFamily("dmarc_exporter_state_write_errors_total",
		"Failed writes to the archive since start (what they held is kept and written at the next try).", true)

	failuresFamily = newStored("dmarc_failure_reports_total",
		"DMARC failure reports (RFC 9991) ingested, by domain, reporter, Auth-Failure (dmarc, dkim, spf, adsp, bodyhash, revoked, signature, other) and Delivery-Result (delivered, spam, policy, reject, unknown, other).",
		"domain", "reporter", "auth_failure", "delivery_result")
	failureDuplicatesFamily = newStored("dmarc_failure_reports_duplicate_total",
		"DMARC failure reports received again and not counted twice.",
		"domain", "reporter")
	tlsReportsFamily = newStored("smtp_tls_reports_total",
		"SMTP TLS reports (RFC 8460) ingested, by policy domain and reporter.",
		"domain", "reporter")
	tlsDuplicatesFamily = newStored("smtp_tls_reports_duplicate_total",
		"SMTP TLS reports received again and not counted twice.",
		"domain", "reporter")
	tlsSessionsFamily = newStored("smtp_tls_sessions_total",
		"TLS sessions reported in SMTP TLS report summaries, by policy domain, reporter, policy type (sts, tlsa, no-policy-found) and result (success, failure).",
		"domain", "reporter", "policy_type", "result")
	tlsFailedFamily = newStored("smtp_tls_failed_sessions_total",
		"Failed TLS sessions in SMTP TLS report failure details, by result type of RFC 8460 §4.3 (other for unknown types).",
		"domain", "reporter", "policy_type", "result_type")

	lastReportFamily = newFamily("dmarc_reporter_last_report_timestamp_seconds",
		"When the newest aggregate report of a reporter for a domain was received; 0 for an expected reporter never seen.",
		false, "domain", "reporter")
	intervalFamily = newFamily("dmarc_reporter_expected_interval_seconds",
		"Usual interval between a reporter's reports for a domain: the median gap between the ends of its latest reports (1 day until two were seen).",
		false, "domain", "reporter")
	silentFamily = newFamily("dmarc_reporter_silent",
		"1 when a reporter has sent no report for a domain for longer than max(2 × its usual interval, 48h), or, when expected but never seen, for 48h since the state began; else 0.",
		false, "domain", "reporter")

	families = []*family{lastReportFamily, intervalFamily, silentFamily, failuresFamily, failureDuplicatesFamily, tlsReportsFamily, tlsDuplicatesFamily,
		tlsSessionsFamily, tlsFailedFamily, messagesFamily, reportsFamily, domainReportsFamily, duplicatesFamily, rejectedFamily,
		invalidRecordsFamily, repairedFamily, overridesFamily, sourcesFamily, lastEndFamily, anomaliesFamily, overflowFamily, dedupKeysFamily,
		lastSaveFamily, saveErrorsFamily, recreatedFamily}
)

// visit calls fn for every series, one family after the other, from the
// live state: a consistent snapshot that pending ingests do not touch,
// read in O(series). With domains configured, a domain no longer in the
// configuration is not shown, and every configured domain has its
// dmarc_domain_reports_total from the start.
func (s *Store) visit(fn func(f *family, v float64, labelValues ...string)) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var monitored map[string]bool
	if len(s.opts.Domains) > 0 {
		monitored = make(map[string]bool, len(s.opts.Domains))
		for _, d := range s.opts.Domains {
			monitored[d] = true
		}
	}
	var shard map[string]bool
	if len(s.opts.Shard) > 0 {
		shard = make(map[string]bool, len(s.opts.Shard))
		for _, d := range s.opts.Shard {
			shard[d] = true
		}
	}
	shown := func(domain string) bool {
		return (monitored == nil || monitored[domain]) && (shard == nil || shard[domain])
	}
	now := s.opts.Now()

	labels := make([]string, 0, 8)
	for _, f := range families {
		if !f.stored {
			continue
		}
		byDomain := f.labels[0] == "domain"
		for key, v := range s.live[f] {
			if byDomain && !shown(firstLabel(key)) {
				continue
			}
			labels = splitLabels(labels, key)
			fn(f, s.served(f, key, v, now), labels...)
		}
		for _, lv := range s.precreated(f, monitored) {
			if byDomain && !shown(lv[0]) {
				continue
			}
			if !s.live.has(f, seriesKey(lv...)) {
				fn(f, 0, lv...)
			}
		}
	}
	for k, r := range s.reporters {
		if shown(k.domain) && r.LastEnd > 0 {
			fn(lastEndFamily, float64(r.LastEnd), k.domain, k.reporter)
		}
	}
	watches := s.watches(now, shown)
	for _, w := range watches {
		fn(lastReportFamily, float64(w.last), w.domain, w.reporter)
	}
	for _, w := range watches {
		fn(intervalFamily, w.interval.Seconds(), w.domain, w.reporter)
	}
	for _, w := range watches {
		silent := 0.0
		if w.silent {
			silent = 1
		}
		fn(silentFamily, silent, w.domain, w.reporter)
	}
	fn(dedupKeysFamily, float64(s.identities))
	var last float64
	if !s.lastSave.IsZero() {
		last = float64(s.lastSave.UnixNano()) / 1e9
	}
	fn(lastSaveFamily, last)
	fn(saveErrorsFamily, float64(s.saveErrors))
	fn(recreatedFamily, float64(s.recreated))
}

// precreated lists the series of f served at 0 before anything is counted
// in them, so that increase() and absence alerts work from the first
// scrape: a configured domain's reports, each source's rejections, the
// overflow of the domain and reporter labels. s.mu is held.
func (s *Store) precreated(f *family, monitored map[string]bool) [][]string {
	var out [][]string
	switch f {
	case domainReportsFamily:
		for d := range monitored {
			out = append(out, []string{d})
		}
	case rejectedFamily:
		for _, src := range s.opts.Sources {
			for _, reason := range RejectReasons {
				out = append(out, []string{src, reason})
			}
		}
	case overflowFamily:
		out = append(out, []string{"domain"}, []string{"reporter"})
	}
	return out
}

// Describe implements prometheus.Collector.
func (s *Store) Describe(ch chan<- *prometheus.Desc) {
	for _, f := range families {
		ch <- f.desc
	}
}

// Collect implements prometheus.Collector.
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	s.visit(func(f *family, v float64, labelValues ...string) {
		t := prometheus.GaugeValue
		if f.counter {
			t = prometheus.CounterValue
		}
		ch <- prometheus.MustNewConstMetric(f.desc, t, v, labelValues...)
	})
}

// WriteText writes the Store's metrics in the Prometheus text exposition
// format (version 0.0.4). It is what /metrics serves for the Store, after
// the rest of the registry.
func (s *Store) WriteText(w io.Writer) error { return s.writeText(w, false) }

// writeText writes the text format, or with openMetrics the families of
// OpenMetrics 1.0 (a counter's family is named without _total; the caller
// writes the final # EOF).
//
// The text is rendered into memory under the read lock and written out as
// it is rendered, and after (spool.go).
func (s *Store) writeText(w io.Writer, openMetrics bool) error {
	buf := newSpool(&s.textBlocks)
	drained := make(chan error, 1)
	go func() { drained <- buf.drain(w) }()
	var line []byte
	var current *family
	seen := map[*family]bool{}
	s.visit(func(f *family, v float64, labelValues ...string) {
		if f != current {
			current = f
			if !seen[f] {
				seen[f] = true
				typ, name, help := "gauge", f.name, escapeHelp(f.help)
				if f.counter {
					typ = "counter"
				}
				if openMetrics {
					help = strings.ReplaceAll(help, `"`, `\"`)
					if f.counter {
						name = strings.TrimSuffix(name, "_total")
					}
				}
				io.WriteString(buf, "# HELP "+name+" "+help+"\n# TYPE "+name+" "+typ+"\n")
			}
		}
		line = append(line[:0], f.name...)
		if len(labelValues) > 0 {
			line = append(line, '{')
			for i, lv := range labelValues {
				if i > 0 {
					line = append(line, ',')
				}
				line = append(line, f.labels[i]...)
				line = append(line, '=')
				line = append(line, '"')
				line = appendLabelValue(line, lv)
				line = append(line, '"')
			}
			line = append(line, '}')
		}
		line = append(line, ' ')
		line = strconv.AppendFloat(line, v, 'g', -1, 64)
		line = append(line, '\n')
		buf.Write(line)
	})
	buf.close()
	return <-drained
}

// appendLabelValue appends a label value escaped as the text format wants:
// backslash, double quote and line feed; everything else as it is.
func appendLabelValue(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			dst = append(dst, `\\`...)
		case '"':
			dst = append(dst, `\"`...)
		case '\n':
			dst = append(dst, `\n`...)
		default:
			dst = append(dst, c)
		}
	}
	return dst
}

// escapeHelp escapes a HELP text as the text format wants.
func escapeHelp(s string) string {
	return strings.NewReplacer(`\`, `\\`, "\n", `\n`).Replace(s)
}
