package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/collector"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// parse --format=summary prints one line per report, tab-separated: the
// input (with the part inside it), the kind, the reporter (the label, as on
// /metrics), the report id,
// the domain, the date range, and the report's totals. Records are read,
// counted and checked as for the JSON output, but not printed.

func summaryLine(w io.Writer, name string, doc report.Document, reporter, id, domain string, begin, end time.Time, totals string) error {
	input := name
	if doc.Part != "" {
		input += "#" + doc.Part
	}
	clean := func(s string) string { return strings.NewReplacer("\t", " ", "\n", " ", "\r", " ").Replace(s) }
	_, err := fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", clean(input), doc.Kind, clean(reporter), clean(id), clean(domain),
		begin.UTC().Format(time.RFC3339), end.UTC().Format(time.RFC3339), totals)
	return err
}

func summarizeAggregate(w io.Writer, name string, doc report.Document, lim report.Limits) error {
	dec := report.NewAggregateDecoder(doc.Body, lim)
	hdr, err := dec.Header()
	if err != nil {
		return err
	}
	var messages uint64
	flagged := 0
	for rec, err := range dec.All() {
		if err != nil {
			return err
		}
		messages += rec.Count
		if rec.Problem != "" {
			flagged++
		}
	}
	return summaryLine(w, name, doc, collector.ReporterName(hdr.Metadata.Email, hdr.Metadata.OrgName, config.DefaultLabelLength), hdr.Metadata.ReportID, hdr.Policy.Domain, hdr.Metadata.Begin, hdr.Metadata.End,
		fmt.Sprintf("records=%d messages=%d flagged=%d", dec.RecordCount(), messages, flagged))
}

func summarizeTLS(w io.Writer, name string, doc report.Document, lim report.Limits) error {
	r, err := report.ParseTLSReport(doc.Body, lim)
	if err != nil {
		return err
	}
	var ok, failed uint64
	var domains []string
	for _, p := range r.Policies {
		ok += p.Successful
		failed += p.Failed
		domains = append(domains, p.Domain)
	}
	return summaryLine(w, name, doc, collector.ReporterName(r.ContactInfo, r.OrganizationName, config.DefaultLabelLength), r.ReportID, strings.Join(domains, ","), r.Begin, r.End,
		fmt.Sprintf("policies=%d successful=%d failed=%d", len(r.Policies), ok, failed))
}

func summarizeFailure(w io.Writer, name string, doc report.Document, lim report.Limits) error {
	r, err := report.ParseFailure(doc.Body, lim)
	if err != nil {
		return err
	}
	return summaryLine(w, name, doc, collector.ReporterName(r.Reporter, "", config.DefaultLabelLength), "", r.Domain(), r.ArrivalDate, r.ArrivalDate,
		fmt.Sprintf("auth_failure=%s delivery_result=%s", r.AuthFailure, r.DeliveryResult))
}
