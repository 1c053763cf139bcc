package collector

import (
	"cmp"
	"io"
	"slices"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/enrich"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// Counted is what ingest counts of one report of an input, from the same
// reading (readInput) as Store.IngestFile, before the Store puts it under
// a domain label, caps the reporter and source labels and refuses
// duplicates: what `dmarc-exporter parse --format=counted` prints.
type Counted struct {
	Kind report.Kind `json:"kind"`
	// Identity is the report's dedup key: two deliveries of one report
	// have the same.
	Identity string `json:"identity"`
	// Domain is the policy domain (an SMTP TLS report's are in its series).
	Domain string `json:"domain,omitempty"`
	// Reporter is the reporter label before the per-domain cap.
	Reporter string    `json:"reporter"`
	Begin    time.Time `json:"begin,omitzero"`
	End      time.Time `json:"end,omitzero"`
	// Series are the counter increments, labelled but for domain and
	// reporter.
	Series []CountedSeries `json:"series"`
}

// CountedSeries is an increment of a counter series.
type CountedSeries struct {
	Metric string            `json:"metric"`
	Labels map[string]string `json:"labels,omitempty"`
	Value  uint64            `json:"value"`
}

// ReadInput reads one input as the exporter does, with e (nil: no source
// identities), and returns what it counts of each report.
func ReadInput(r io.Reader, lim report.Limits, labelLength int, e *enrich.Enricher) ([]Counted, error) {
	parsed, err := readInput(r, parseOptions{limits: lim, labelLength: labelLength}, e, nil)
	if err != nil {
		return nil, err
	}
	var out []Counted
	for _, p := range parsed.aggregates {
		c := Counted{Kind: report.KindAggregate, Identity: p.id, Domain: p.policyDomain, Reporter: p.reporter,
			Begin: p.begin.UTC(), End: p.end.UTC()}
		add := func(f *family, v uint64, values ...string) {
			c.Series = append(c.Series, counted(f, 2, v, values...))
		}
		add(reportsFamily, 1)
		for _, reason := range []string{InvalidCount, InvalidSourceIP} {
			add(invalidRecordsFamily, p.invalid[reason], reason)
		}
		for k, n := range p.messages {
			add(messagesFamily, n, k.disposition, k.dmarc, k.dkim, k.spf)
		}
		for reason, n := range p.overrides {
			add(overridesFamily, n, reason)
		}
		for k, n := range p.sources {
			c.Series = append(c.Series, counted(sourcesFamily, 1, n, k.asn, k.org, k.country, k.name, k.class, k.disposition, k.dmarc))
		}
		out = append(out, sortSeries(c))
	}
	for _, t := range parsed.tls {
		c := Counted{Kind: report.KindSMTPTLS, Reporter: ReporterName(t.ContactInfo, t.OrganizationName, labelLength),
			Identity: tlsIdentity(t.TLSReport), Begin: t.Begin.UTC(), End: t.End.UTC()}
		for _, p := range t.Policies {
			// The policy domain as a label: a report may cover several.
			add := func(f *family, v uint64, values ...string) {
				s := counted(f, 2, v, values...)
				s.Labels["domain"] = p.Domain
				c.Series = append(c.Series, s)
			}
			add(tlsSessionsFamily, p.Successful, string(p.Type), "success")
			add(tlsSessionsFamily, p.Failed, string(p.Type), "failure")
			for _, f := range p.Failures {
				add(tlsFailedFamily, f.FailedSessions, string(p.Type), string(f.ResultType))
			}
		}
		out = append(out, sortSeries(c))
	}
	for _, f := range parsed.failures {
		c := Counted{Kind: report.KindFailure, Identity: failureIdentity(f), Domain: f.Domain(),
			Reporter: ReporterName(f.Reporter, "", labelLength)}
		c.Series = append(c.Series, counted(failuresFamily, 2, 1, string(f.AuthFailure), string(f.DeliveryResult)))
		out = append(out, c)
	}
	return out, nil
}

// counted is a series of f with its label values from the skip-th label
// on (the first ones, domain and reporter, are the Store's to set).
func counted(f *family, skip int, v uint64, values ...string) CountedSeries {
	s := CountedSeries{Metric: f.name, Value: v, Labels: map[string]string{}}
	for i, lv := range values {
		s.Labels[f.labels[skip+i]] = lv
	}
	return s
}

// sortSeries orders a report's series by metric and labels, so that the
// output does not change from run to run.
func sortSeries(c Counted) Counted {
	slices.SortFunc(c.Series, func(a, b CountedSeries) int {
		if n := cmp.Compare(a.Metric, b.Metric); n != 0 {
			return n
		}
		return cmp.Compare(labelString(a.Labels), labelString(b.Labels))
	})
	return c
}

func labelString(m map[string]string) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	out := ""
	for _, k := range keys {
		out += k + "=" + m[k] + ","
	}
	return out
}
