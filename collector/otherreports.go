package collector

import (
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// SMTP TLS reports (RFC 8460) and DMARC failure reports (RFC 9991) become
// counters here, under the same domain matching, caps and deduplication as
// aggregate reports. Failure reports carry personal data: none of it goes
// into a label, and only redacted samples are kept, when configured.

type tlsKey struct{ domain, reporter, policyType, result string }

type failureKey struct{ domain, reporter, authFailure, deliveryResult string }

// kindStats count reports of one kind per (domain, reporter).
type kindStats struct {
	Reports    uint64 `json:"reports"`
	Duplicates uint64 `json:"duplicates"`
}

func stats(m map[reporterKey]*kindStats, k reporterKey) *kindStats {
	st := m[k]
	if st == nil {
		st = &kindStats{}
		m[k] = st
	}
	return st
}

// seenID records a report identity and reports whether it was known. s.mu
// is held.
func (s *Store) seenID(id string, now time.Time) bool {
	if s.knownID(id) {
		return true
	}
	s.pending.dedup[id] = now.Unix()
	return false
}

// knownID reports whether a report identity was counted already, pending,
// being saved or live. s.mu is held (read is enough).
func (s *Store) knownID(id string) bool {
	for _, c := range []*counters{s.pending, s.committing, s.live} {
		if c == nil {
			continue
		}
		if _, ok := c.dedup[id]; ok {
			return true
		}
	}
	return false
}

// stageTLS adds an SMTP TLS report: per policy, its domain's session
// counts from the summary and failed sessions by result type. s.mu is held.
func (s *Store) stageTLS(source string, r *report.TLSReport, now time.Time, labelLength int) {
	name := ReporterName(r.ContactInfo, r.OrganizationName, labelLength)
	dup := s.seenID(dedupKey("smtp_tls:"+reporterIdentity(r.ContactInfo, r.OrganizationName), r.ReportID, r.Begin, r.End, ""), now)
	counted := map[reporterKey]bool{}
	unmonitored := false
	for _, p := range r.Policies {
		domain, ok := s.domainLabel(p.Domain)
		if !ok {
			unmonitored = true
			continue
		}
		rk := reporterKey{domain, s.reporterLabel(domain, name)}
		st := stats(s.pending.tlsReporters, rk)
		if !counted[rk] {
			counted[rk] = true
			if dup {
				st.Duplicates++
			} else {
				st.Reports++
			}
		}
		if dup {
			continue
		}
		pt := s.in.get(string(p.Type))
		s.pending.tlsSessions[tlsKey{rk.domain, rk.reporter, pt, "success"}] += p.Successful
		s.pending.tlsSessions[tlsKey{rk.domain, rk.reporter, pt, "failure"}] += p.Failed
		for _, f := range p.Failures {
			s.pending.tlsFailed[tlsKey{rk.domain, rk.reporter, pt, s.in.get(string(f.ResultType))}] += f.FailedSessions
		}
	}
	if unmonitored && !dup && len(counted) == 0 {
		// Counted once per report, and only when nothing of it was counted.
		s.pending.rejected[rejectKey{source, RejectDomainNotMonitored}]++
	}
}

// stageFailure adds a failure report. s.mu is held.
func (s *Store) stageFailure(source string, f *report.FailureReport, now time.Time, labelLength int) {
	domain, ok := s.domainLabel(f.Domain())
	if !ok {
		s.pending.rejected[rejectKey{source, RejectDomainNotMonitored}]++
		return
	}
	rk := reporterKey{domain, s.reporterLabel(domain, ReporterName(f.Reporter, "", labelLength))}
	st := stats(s.pending.failureReporters, rk)
	id := dedupKey("failure:"+reporterIdentity(f.Reporter, ""), f.Identity, time.Time{}, time.Time{}, f.Domain())
	if s.seenID(id, now) {
		st.Duplicates++
		return
	}
	st.Reports++
	s.pending.failures[failureKey{rk.domain, rk.reporter, s.in.get(string(f.AuthFailure)), s.in.get(string(f.DeliveryResult))}]++
	if s.opts.FailureSamples > 0 {
		s.pending.samples = append(s.pending.samples, Sample{Domain: domain, Reporter: rk.reporter, Source: source,
			Ingested: now.UTC(), Report: f.Redacted()})
	}
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
func (s *Store) Samples() []Sample {
	s.mu.RLock()
	defer s.mu.RUnlock()
	out := make([]Sample, 0, len(s.live.samples))
	for i := len(s.live.samples) - 1; i >= 0; i-- {
		out = append(out, s.live.samples[i])
	}
	return out
}
