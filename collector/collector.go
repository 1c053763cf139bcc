package collector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Descriptions of the metrics the Store serves. Counters grow when a report
// is ingested, not during the day the report describes.
var (
	messagesDesc = prometheus.NewDesc("dmarc_messages_total",
		"Messages reported in DMARC aggregate reports (the sum of record counts), by protected domain, reporter, applied disposition, DMARC result and policy-evaluated (aligned) DKIM and SPF results. Grows when a report is ingested.",
		[]string{"domain", "reporter", "disposition", "dmarc", "dkim", "spf"}, nil)
	reportsDesc = prometheus.NewDesc("dmarc_reports_total",
		"Aggregate reports ingested, by protected domain and reporter.",
		[]string{"domain", "reporter"}, nil)
	domainReportsDesc = prometheus.NewDesc("dmarc_domain_reports_total",
		"Aggregate reports ingested per protected domain; present at 0 for every configured domain from the first scrape.",
		[]string{"domain"}, nil)
	duplicatesDesc = prometheus.NewDesc("dmarc_reports_duplicate_total",
		"Aggregate reports received again (same reporter, report_id, date range and policy domain) and not counted twice.",
		[]string{"domain", "reporter"}, nil)
	rejectedDesc = prometheus.NewDesc("dmarc_reports_rejected_total",
		"Inputs or reports refused, by source and reason (malformed, no_report, too_large, unsupported, domain_not_monitored).",
		[]string{"source", "reason"}, nil)
	invalidRecordsDesc = prometheus.NewDesc("dmarc_records_invalid_total",
		"Records refused for a wrong value (count missing, negative, not a number or implausible; source IP missing or invalid); their messages are not counted.",
		[]string{"domain", "reporter"}, nil)
	overridesDesc = prometheus.NewDesc("dmarc_policy_override_messages_total",
		"Messages whose disposition the receiver overrode, by reason (forwarded, sampled_out, trusted_forwarder, mailing_list, local_policy, policy_test_mode, other).",
		[]string{"domain", "reporter", "reason"}, nil)
	lastEndDesc = prometheus.NewDesc("dmarc_report_end_timestamp_seconds",
		"End of the date range of the newest report ingested, by domain and reporter (a range ending in the future counts as ending at ingest).",
		[]string{"domain", "reporter"}, nil)
	anomaliesDesc = prometheus.NewDesc("dmarc_report_date_range_anomalies_total",
		"Reports whose date range is odd: kind=future (ends over a day after ingest), old (ended over 90 days before ingest), long (spans over 7 days). They are counted all the same.",
		[]string{"domain", "reporter", "kind"}, nil)
	overflowDesc = prometheus.NewDesc("dmarc_exporter_label_overflow_total",
		"Reports whose label value was replaced by \"other\" because the label reached its cap of distinct values.",
		[]string{"label"}, nil)
	dedupKeysDesc = prometheus.NewDesc("dmarc_exporter_dedup_keys",
		"Report identities remembered to refuse duplicates.", nil, nil)
	lastSaveDesc = prometheus.NewDesc("dmarc_exporter_state_last_write_timestamp_seconds",
		"When the state file was last written successfully; 0 if not since start.", nil, nil)
	saveErrorsDesc = prometheus.NewDesc("dmarc_exporter_state_write_errors_total",
		"Failed writes of the state file since start.", nil, nil)
)

// Describe implements prometheus.Collector.
func (s *Store) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{messagesDesc, reportsDesc, domainReportsDesc, duplicatesDesc, rejectedDesc,
		invalidRecordsDesc, overridesDesc, lastEndDesc, anomaliesDesc, overflowDesc, dedupKeysDesc, lastSaveDesc, saveErrorsDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it reads the live counters, a
// consistent snapshot that pending ingests do not touch, in O(series).
func (s *Store) Collect(ch chan<- prometheus.Metric) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var monitored map[string]bool
	if len(s.opts.Domains) > 0 {
		monitored = make(map[string]bool, len(s.opts.Domains))
		for _, d := range s.opts.Domains {
			monitored[d] = true
		}
	}
	// shown says whether a domain's series are exported: with domains
	// configured, a domain removed from the configuration disappears.
	shown := func(domain string) bool { return monitored == nil || monitored[domain] }
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}

	for k, v := range s.live.messages {
		if shown(k.domain) {
			counter(messagesDesc, v, k.domain, k.reporter, k.disposition, k.dmarc, k.dkim, k.spf)
		}
	}
	for k, r := range s.live.reporters {
		if !shown(k.domain) {
			continue
		}
		counter(reportsDesc, r.Reports, k.domain, k.reporter)
		counter(duplicatesDesc, r.Duplicates, k.domain, k.reporter)
		counter(invalidRecordsDesc, r.InvalidRecords, k.domain, k.reporter)
		counter(anomaliesDesc, r.Future, k.domain, k.reporter, "future")
		counter(anomaliesDesc, r.Old, k.domain, k.reporter, "old")
		counter(anomaliesDesc, r.Long, k.domain, k.reporter, "long")
		if r.LastEnd > 0 {
			ch <- prometheus.MustNewConstMetric(lastEndDesc, prometheus.GaugeValue, float64(r.LastEnd), k.domain, k.reporter)
		}
	}
	for k, v := range s.live.overrides {
		if shown(k.domain) {
			counter(overridesDesc, v, k.domain, k.reporter, k.reason)
		}
	}
	if monitored == nil {
		for d, v := range s.live.domains {
			counter(domainReportsDesc, v, d)
		}
	}
	for d := range monitored { // pre-created at 0
		counter(domainReportsDesc, s.live.domains[d], d)
	}
	for k, v := range s.live.rejected {
		counter(rejectedDesc, v, k.source, k.reason)
	}
	for _, label := range []string{"domain", "reporter"} {
		counter(overflowDesc, s.live.overflow[label], label)
	}
	ch <- prometheus.MustNewConstMetric(dedupKeysDesc, prometheus.GaugeValue, float64(len(s.live.dedup)))
	var last float64
	if !s.lastSave.IsZero() {
		last = float64(s.lastSave.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(lastSaveDesc, prometheus.GaugeValue, last)
	counter(saveErrorsDesc, s.saveErrors)
}
