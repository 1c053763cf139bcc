package collector

import (
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// SMTP TLS reports (RFC 8460) and DMARC failure reports (RFC 9991) become
// counters here, under the same domain matching, caps and deduplication as
// aggregate reports. Failure reports carry personal data: none of it goes
// into a label, and only redacted samples are kept, when configured.

// seenID records a report identity in b and reports whether it was known
// already. s.mu is held.
func (s *Store) seenID(b *batch, id string, now time.Time) (bool, error) {
	if _, ok := b.ids[id]; ok {
		return true, nil
	}
	known, err := s.knownID(id)
	if err != nil || known {
		return known, err
	}
	b.ids[id] = now.Unix()
	return false, nil
}

// knownID reports whether a report identity was counted already: pending,
// being saved, or in the archive. s.mu is held (read is enough).
func (s *Store) knownID(id string) (bool, error) {
	for _, b := range []*batch{s.pending, s.committing} {
		if b == nil {
			continue
		}
		if _, ok := b.ids[id]; ok {
			return true, nil
		}
	}
	return s.arc.Known(id)
}

// tlsIdentity is the dedup key of an SMTP TLS report.
func tlsIdentity(r *report.TLSReport) string {
	return dedupKey("smtp_tls:"+reporterIdentity(r.ContactInfo, r.OrganizationName), r.ReportID, r.Begin, r.End, "")
}

// failureIdentity is the dedup key of a failure report.
func failureIdentity(f *report.FailureReport) string {
	return dedupKey("failure:"+reporterIdentity(f.Reporter, ""), f.Identity, time.Time{}, time.Time{}, f.Domain())
}

// stageTLS adds an SMTP TLS report: per policy, its domain's session
// counts from the summary and failed sessions by result type. s.mu is held.
func (s *Store) stageTLS(in *input, t parsedTLS, now time.Time, labelLength int) error {
	r := t.TLSReport
	name := ReporterName(r.ContactInfo, r.OrganizationName, labelLength)
	id := tlsIdentity(r)
	dup, err := s.seenID(in.b, id, now)
	if err != nil {
		return err
	}
	totals := in.b.totals
	counted := map[reporterKey]bool{}
	domains := make([]string, len(r.Policies))
	unmonitored := false
	for i, p := range r.Policies {
		domain, ok := s.domainLabel(in.b, p.Domain)
		if !ok {
			unmonitored = true
			continue
		}
		domains[i] = domain
		rk := reporterKey{domain, s.reporterLabel(in.b, domain, name)}
		if !counted[rk] {
			counted[rk] = true
			totals.add(tlsReportsFamily, 0, rk.domain, rk.reporter)
			totals.add(tlsDuplicatesFamily, 0, rk.domain, rk.reporter)
			if dup {
				totals.add(tlsDuplicatesFamily, 1, rk.domain, rk.reporter)
			} else {
				totals.add(tlsReportsFamily, 1, rk.domain, rk.reporter)
			}
		}
		if dup {
			continue
		}
		pt := string(p.Type)
		totals.add(tlsSessionsFamily, p.Successful, rk.domain, rk.reporter, pt, "success")
		totals.add(tlsSessionsFamily, p.Failed, rk.domain, rk.reporter, pt, "failure")
		for _, f := range p.Failures {
			totals.add(tlsFailedFamily, f.FailedSessions, rk.domain, rk.reporter, pt, string(f.ResultType))
		}
	}
	if unmonitored && !dup && len(counted) == 0 {
		// Counted once per report, and only when nothing of it was counted.
		totals.add(rejectedFamily, 1, in.source, RejectDomainNotMonitored)
	}
	if !dup && len(counted) > 0 {
		in.b.tls = append(in.b.tls, &archive.TLS{Identity: id, Reporter: name, Report: r, Domains: domains,
			Source: in.source, Input: in.path, Received: now, Raw: t.raw})
	}
	return nil
}

// stageFailure adds a failure report. s.mu is held.
func (s *Store) stageFailure(in *input, f *report.FailureReport, now time.Time, labelLength int) error {
	domain, ok := s.domainLabel(in.b, f.Domain())
	if !ok {
		in.b.totals.add(rejectedFamily, 1, in.source, RejectDomainNotMonitored)
		return nil
	}
	rk := reporterKey{domain, s.reporterLabel(in.b, domain, ReporterName(f.Reporter, "", labelLength))}
	in.b.totals.add(failureDuplicatesFamily, 0, rk.domain, rk.reporter)
	id := failureIdentity(f)
	dup, err := s.seenID(in.b, id, now)
	if err != nil {
		return err
	}
	if dup {
		in.b.totals.add(failureDuplicatesFamily, 1, rk.domain, rk.reporter)
		return nil
	}
	in.b.totals.add(failuresFamily, 1, rk.domain, rk.reporter, string(f.AuthFailure), string(f.DeliveryResult))
	row := &archive.Failure{Identity: id, Domain: domain, Reporter: rk.reporter, AuthFailure: string(f.AuthFailure),
		DeliveryResult: string(f.DeliveryResult), Source: in.source, Input: in.path, Received: now}
	if s.opts.FailureSamples > 0 {
		row.Redacted = f.Redacted()
	}
	in.b.failures = append(in.b.failures, row)
	return nil
}

// Sample is a redacted failure report kept for the detail view.
type Sample struct {
	Domain   string                `json:"domain"`
	Reporter string                `json:"reporter"`
	Source   string                `json:"source"`
	Ingested time.Time             `json:"ingested"`
	Report   *report.FailureReport `json:"report"`
}

// Samples returns the kept failure report samples, newest first.
func (s *Store) Samples() ([]Sample, error) {
	s.mu.RLock()
	n := s.opts.FailureSamples
	s.mu.RUnlock()
	if n == 0 {
		return []Sample{}, nil
	}
	rows, err := s.arc.FailureSamples(n)
	if err != nil {
		return nil, err
	}
	out := make([]Sample, 0, len(rows))
	for _, r := range rows {
		out = append(out, Sample{Domain: r.Domain, Reporter: r.Reporter, Source: r.Source, Ingested: r.Received, Report: r.Report})
	}
	return out, nil
}
