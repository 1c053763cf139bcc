package collector

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// This file is where a report becomes a counter: IngestFile parses a file
// into per-report totals (parsedReport), and stage adds them, under bounded
// labels, to the pending batch that Commit makes live and saves.

// Reasons for dmarc_reports_rejected_total: a small fixed set.
const (
	RejectMalformed          = "malformed"            // not well-formed, or a wrong value
	RejectNoReport           = "no_report"            // no DMARC report in the input
	RejectTooLarge           = "too_large"            // a bound of report.Limits crossed
	RejectDomainNotMonitored = "domain_not_monitored" // a report for a domain not configured
	RejectNotFailure         = "not_auth_failure"     // an ARF report of another feedback type (abuse, ...)
)

// RejectReasons lists every reason, for pre-created zero series.
var RejectReasons = []string{RejectMalformed, RejectNoReport, RejectTooLarge, RejectDomainNotMonitored, RejectNotFailure}

// rejectReason classifies a parse error.
func rejectReason(err error) string {
	switch {
	case errors.Is(err, report.ErrLimit):
		return RejectTooLarge
	case errors.Is(err, report.ErrNotFailure):
		return RejectNotFailure
	case errors.Is(err, report.ErrNoReport), errors.Is(err, report.ErrNotAggregate):
		return RejectNoReport
	}
	return RejectMalformed
}

// Reasons for dmarc_records_invalid_total.
const (
	InvalidCount    = "count"     // count missing, not a number or implausible: the record is not counted
	InvalidSourceIP = "source_ip" // source address missing or unreadable: counted, with source identity "invalid"
)

// comboKey is the part of a message series key that a record gives.
type comboKey struct{ disposition, dmarc, dkim, spf string }

// parsedReport is one aggregate report reduced to what is counted: its
// identity and its records summed by label combination, so that its size
// does not grow with its record count.
type parsedReport struct {
	hdr          *report.Aggregate
	policyDomain string
	reporter     string // ReporterName, before the per-domain cap
	id           string // dedup identity
	begin, end   time.Time
	messages     map[comboKey]uint64
	overrides    map[string]uint64
	invalid      map[string]uint64 // records by what is wrong with them (InvalidCount, InvalidSourceIP)
	recordCount  int
	total        uint64              // messages counted
	failed       uint64              // messages of records whose DMARC result is fail
	kept         []archive.Record    // what the archive keeps, at most archive.MaxRecordsKept
	raw          []byte              // the report as received, gzip; nil when not kept
	selectors    map[string]struct{} // DKIM selectors of the policy domain's signatures
	// records are the messages by source address and what the record
	// says, for enrichment (sources.go), which fills sources.
	records map[sourceRecord]uint64
	sources map[sourceCombo]uint64
}

// parsedFile is every report of one input.
type parsedFile struct {
	aggregates []*parsedReport
	tls        []parsedTLS
	failures   []*report.FailureReport
}

// parsedTLS is an SMTP TLS report and its bytes as received, compressed.
type parsedTLS struct {
	*report.TLSReport
	raw []byte
}

// parseOptions say how to read an input.
type parseOptions struct {
	limits      report.Limits
	labelLength int
	withSources bool // keep what enrichment needs
	// maxRaw is the largest report whose bytes are kept (compressed) for
	// the archive; 0 keeps none.
	maxRaw int
}

// readInput is where an input becomes reports to count, with no Store and
// no lock: every report of r, and, with an enricher, the identity of the
// sources of the aggregate reports want says will be counted (nil: all).
// It fails as a whole when any part fails, so that a file is counted
// entirely or not at all. Store.IngestFile stages what it returns, and
// dmarc-exporter parse --format=counted prints it (ReadInput).
func readInput(r io.Reader, opts parseOptions, e *enrich.Enricher, want func(*parsedReport) (bool, error)) (*parsedFile, error) {
	opts.withSources = e != nil
	parsed, err := parseFile(r, opts)
	if err != nil || e == nil {
		return parsed, err
	}
	return parsed, enrichReports(e, parsed, opts.labelLength, want)
}

// parseFile reads every report of one input.
func parseFile(r io.Reader, opts parseOptions) (*parsedFile, error) {
	out := &parsedFile{}
	lim, labelLength, withSources := opts.limits, opts.labelLength, opts.withSources
	err := report.Walk(r, lim, func(doc report.Document) error {
		raw := newRawCapture(opts.maxRaw)
		doc.Body = raw.tee(doc.Body)
		switch doc.Kind {
		case report.KindSMTPTLS:
			rep, err := report.ParseTLSReport(doc.Body, lim)
			if err == nil {
				out.tls = append(out.tls, parsedTLS{rep, raw.compressed()})
			}
			return err
		case report.KindFailure:
			rep, err := report.ParseFailure(doc.Body, lim)
			if err == nil {
				out.failures = append(out.failures, rep)
			}
			return err
		}
		dec := report.NewAggregateDecoder(doc.Body, lim)
		hdr, err := dec.Header()
		if err != nil {
			return err
		}
		p := &parsedReport{
			hdr:          hdr,
			policyDomain: hdr.Policy.Domain,
			reporter:     ReporterName(hdr.Metadata.Email, hdr.Metadata.OrgName, labelLength),
			begin:        hdr.Metadata.Begin,
			end:          hdr.Metadata.End,
			messages:     map[comboKey]uint64{},
			overrides:    map[string]uint64{},
			invalid:      map[string]uint64{},
			selectors:    map[string]struct{}{},
		}
		p.id = dedupKey(reporterIdentity(hdr.Metadata.Email, hdr.Metadata.OrgName), hdr.Metadata.ReportID, p.begin, p.end, p.policyDomain)
		if withSources {
			p.records = map[sourceRecord]uint64{}
		}
		for rec, err := range dec.All() {
			if err != nil {
				return err
			}
			p.recordCount++
			// Only a bad count excludes a record: one whose source
			// address is unreadable is counted, without a source.
			if rec.BadSourceIP {
				p.invalid[InvalidSourceIP]++
			}
			if rec.BadCount {
				p.invalid[InvalidCount]++
				if len(p.kept) < archive.MaxRecordsKept {
					p.kept = append(p.kept, archive.Record{Record: rec, DMARC: combo(rec).dmarc})
				}
				continue
			}
			k := combo(rec)
			if len(p.kept) < archive.MaxRecordsKept {
				p.kept = append(p.kept, archive.Record{Record: rec, DMARC: k.dmarc})
			}
			p.messages[k] += rec.Count
			p.total += rec.Count
			if k.dmarc == "fail" {
				p.failed += rec.Count
			}
			if p.records != nil {
				p.records[sourceRecordOf(rec, k, len(p.records))] += rec.Count
			}
			for _, reason := range overrideReasons(rec) {
				p.overrides[reason] += rec.Count
			}
			for _, d := range rec.DKIMResults {
				if d.Domain == p.policyDomain && d.Selector != "" && len(p.selectors) < maxSelectors && validSelector(d.Selector) {
					p.selectors[strings.ToLower(d.Selector)] = struct{}{}
				}
			}
		}
		p.raw = raw.compressed()
		out.aggregates = append(out.aggregates, p)
		return nil
	})
	return out, err
}

// combo maps a record to label values from closed sets.
func combo(rec *report.Record) comboKey {
	k := comboKey{
		disposition: string(rec.Disposition),
		dkim:        dmarcLabel(rec.DKIM),
		spf:         dmarcLabel(rec.SPF),
		dmarc:       "fail",
	}
	if k.disposition == "" {
		k.disposition = string(report.DispositionOther)
	}
	// RFC 7489 §6.6.2: DMARC passes when either aligned mechanism passes.
	if rec.DKIM == report.DMARCPass || rec.SPF == report.DMARCPass {
		k.dmarc = "pass"
	}
	return k
}

func dmarcLabel(r report.DMARCResult) string {
	if r == "" {
		return string(report.DMARCOther)
	}
	return string(r)
}

// overrideReasons lists a record's distinct override reasons; an empty
// type with a comment is "other".
func overrideReasons(rec *report.Record) []string {
	var out []string
	for _, r := range rec.Reasons {
		t := string(r.Type)
		if t == "" {
			if r.Comment == "" {
				continue
			}
			t = string(report.ReasonOther)
		}
		dup := false
		for _, o := range out {
			dup = dup || o == t
		}
		if !dup {
			out = append(out, t)
		}
	}
	return out
}

// validSelector accepts DKIM selectors that are DNS labels (RFC 6376
// §3.1): anything else from a hostile report is not looked up.
func validSelector(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// reporterIdentity is the reporter as written (its address, else its
// name), lower-cased: part of a report's identity. Not the label value,
// which depends on label_length and the public suffix list, either of which
// may change between two deliveries of one report.
func reporterIdentity(email, orgName string) string {
	if e := strings.ToLower(strings.TrimSpace(email)); e != "" {
		return e
	}
	return strings.ToLower(strings.TrimSpace(orgName))
}

// dedupKey identifies a report across deliveries. RFC 7489 leaves report_id
// uniqueness to the reporter and Google and Mimecast reuse ids across date
// ranges, so the range and the policy domain are part of the key; the same
// report arriving twice, in two compressions, has the same key. Hashed, so
// that a hostile report_id costs no more memory than a short one.
func dedupKey(reporter, reportID string, begin, end time.Time, domain string) string {
	h := sha256.New()
	for _, s := range []string{reporter, reportID, strconv.FormatInt(begin.Unix(), 10), strconv.FormatInt(end.Unix(), 10), domain} {
		fmt.Fprintf(h, "%d:%s", len(s), s)
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Seen reports whether the file at path (absolute), with the given mark
// (its size and modification time), was read already, and if so whether it
// was rejected.
func (s *Store) Seen(path, mark string) (seen, rejected bool) {
	s.mu.RLock()
	for _, b := range []*batch{s.pending, s.committing} {
		if b == nil {
			continue
		}
		if in, ok := b.inputs[path]; ok {
			s.mu.RUnlock()
			return in.Mark == mark, in.Refused
		}
	}
	s.mu.RUnlock()
	in, ok, err := s.arc.Input(path)
	if err != nil {
		// Read again: dedup keeps its reports from being counted twice.
		s.opts.Logger.Warn("read mark", "err", err)
		return false, false
	}
	return ok && in.Mark == mark, in.Refused
}

// IngestFile reads every report of one file and stages its counts; nothing
// is visible or saved until Commit. It returns the parse error when the
// file is rejected, which is staged as a rejection; either way the file is
// marked as read. An error reading the file itself (report.ErrRead) stages
// nothing: the file is to be read again.
func (s *Store) IngestFile(source, path, mark string, r io.Reader) error {
	s.mu.RLock()
	labelLength, enricher, maxRaw := s.opts.Limits.LabelLength, s.opts.Enricher, s.opts.MaxRawBytes
	s.mu.RUnlock()
	parsed, err := readInput(r, parseOptions{limits: s.opts.ReportLimits, labelLength: labelLength, maxRaw: maxRaw},
		enricher, s.mayCount)
	if errors.Is(err, report.ErrRead) {
		return err
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.opts.Now()
	if err != nil {
		s.reject(source, path, mark, err, now)
		return err
	}
	// Staged into a batch of its own first, so that an archive read error
	// halfway leaves nothing of the file behind.
	in := &input{source: source, path: path, b: newBatch()}
	if err := s.stageAll(in, parsed, now, labelLength); err != nil {
		return fmt.Errorf("%w: %w", report.ErrRead, err)
	}
	s.staged.reports += uint64(len(parsed.aggregates) + len(parsed.tls) + len(parsed.failures))
	for _, series := range []*family{duplicatesFamily, tlsDuplicatesFamily, failureDuplicatesFamily} {
		for _, n := range in.b.totals[series] {
			s.staged.duplicates += n
		}
	}
	in.b.inputs[path] = archive.Input{Path: path, Source: source, Mark: mark, Read: now}
	s.enqueue(in.b)
	return nil
}

// stageAll stages every report of an input. s.mu is held.
func (s *Store) stageAll(in *input, parsed *parsedFile, now time.Time, labelLength int) error {
	for _, p := range parsed.aggregates {
		if err := s.stage(in, p, now); err != nil {
			return err
		}
	}
	for _, t := range parsed.tls {
		if err := s.stageTLS(in, t, now, labelLength); err != nil {
			return err
		}
	}
	for _, f := range parsed.failures {
		if err := s.stageFailure(in, f, now, labelLength); err != nil {
			return err
		}
	}
	return nil
}

// Staged returns how many reports were read, and how many of them were
// duplicates, since the Store was opened.
func (s *Store) Staged() (reports, duplicates uint64) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.staged.reports, s.staged.duplicates
}

// input is an input being staged: where it came from, and its batch.
type input struct {
	source, path string
	b            *batch
}

// RejectFile stages a file as rejected without reading it: a source that
// knows a file is unusable (a message over the size limit) records it, and
// the reason err gives, like any rejection.
func (s *Store) RejectFile(source, path, mark string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reject(source, path, mark, err, s.opts.Now())
}

// Remember marks a path read with this mark, holding no report: a
// source's note to itself (a mailbox's last complete pass), saved with
// the next Commit.
func (s *Store) Remember(source, path, mark string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := newBatch()
	b.inputs[path] = archive.Input{Path: path, Source: source, Mark: mark, Read: s.opts.Now()}
	s.enqueue(b)
}

// reject stages a refused input. s.mu is held.
func (s *Store) reject(source, path, mark string, err error, now time.Time) {
	reason := rejectReason(err)
	b := newBatch()
	b.inputs[path] = archive.Input{Path: path, Source: source, Mark: mark, Refused: true, Reason: reason,
		Error: err.Error(), Read: now}
	b.totals.add(rejectedFamily, 1, source, reason)
	s.enqueue(b)
}

// Date range anomalies, counted per reporter.
const (
	futureSlack = 24 * time.Hour      // a range ending later than this after ingest is "future"
	oldAge      = 90 * 24 * time.Hour // a range ending longer than this before ingest is "old"
	longRange   = 7 * 24 * time.Hour  // a range longer than this is "long"
)

// stage adds one report to the input's batch. s.mu is held.
func (s *Store) stage(in *input, p *parsedReport, now time.Time) error {
	domain, ok := s.domainLabel(in.b, p.policyDomain)
	if !ok {
		in.b.totals.add(rejectedFamily, 1, in.source, RejectDomainNotMonitored)
		return nil
	}
	reporter := s.reporterLabel(in.b, domain, p.reporter)
	t := in.b.totals
	for _, f := range []*family{reportsFamily, duplicatesFamily} {
		t.add(f, 0, domain, reporter)
	}
	for _, reason := range []string{InvalidCount, InvalidSourceIP} {
		t.add(invalidRecordsFamily, 0, domain, reporter, reason)
	}
	for _, kind := range []string{"future", "old", "long"} {
		t.add(anomaliesFamily, 0, domain, reporter, kind)
	}
	dup, err := s.seenID(in.b, p.id, now)
	if err != nil {
		return err
	}
	if dup {
		t.add(duplicatesFamily, 1, domain, reporter)
		return nil
	}
	t.add(reportsFamily, 1, domain, reporter)
	for reason, n := range p.invalid {
		t.add(invalidRecordsFamily, n, domain, reporter, reason)
	}
	end := p.end
	switch {
	case end.After(now.Add(futureSlack)):
		t.add(anomaliesFamily, 1, domain, reporter, "future")
		end = now // a report from the future must not look fresh for days
	case end.Before(now.Add(-oldAge)):
		t.add(anomaliesFamily, 1, domain, reporter, "old")
	}
	if p.end.Sub(p.begin) > longRange {
		t.add(anomaliesFamily, 1, domain, reporter, "long")
	}
	in.b.reporter(reporterKey{domain, reporter}).add(&reporterStats{LastEnd: end.Unix(), LastReceived: now.Unix(), Ends: []int64{end.Unix()}})
	t.add(domainReportsFamily, 1, domain)
	if p.hdr.Repairs.InvalidBytes > 0 {
		t.add(repairedFamily, 1, domain, reporter, "invalid_bytes")
	}
	if p.hdr.Repairs.StrayStartTag != "" {
		t.add(repairedFamily, 1, domain, reporter, "stray_start_tag")
	}
	if len(s.opts.Domains) > 0 { // only configured domains are watched in DNS
		set := setOf(in.b.selectors, p.policyDomain)
		for sel := range p.selectors {
			set[sel] = struct{}{}
		}
	}
	for c, n := range p.messages {
		t.add(messagesFamily, n, domain, reporter, c.disposition, c.dmarc, c.dkim, c.spf)
	}
	for reason, n := range p.overrides {
		t.add(overridesFamily, n, domain, reporter, reason)
	}
	s.stageSources(in.b, domain, p.sources)
	in.b.aggregates = append(in.b.aggregates, &archive.Aggregate{Identity: p.id, Domain: domain, Reporter: reporter,
		Header: p.hdr, Records: p.kept, RecordCount: p.recordCount, InvalidRecords: int(p.invalid[InvalidCount] + p.invalid[InvalidSourceIP]), Messages: p.total,
		FailedMessages: p.failed, Source: in.source, Input: in.path, Received: now, Raw: p.raw})
	return nil
}

// domainLabel returns the domain label of a policy domain: the most
// specific configured domain at or above it, or, with no domains
// configured, the domain itself up to Limits.Domains distinct values.
// ok is false when domains are configured and none matches.
func (s *Store) domainLabel(b *batch, policyDomain string) (label string, ok bool) {
	if len(s.opts.Domains) > 0 {
		return s.configuredDomain(policyDomain)
	}
	d := sanitize(config.NormalizeDomain(policyDomain), s.opts.Limits.LabelLength)
	if _, known := s.reporterSets[d]; known {
		return d, true
	}
	if len(s.reporterSets) >= s.opts.Limits.Domains {
		b.totals.add(overflowFamily, 1, "domain")
		d = otherLabel
	}
	setOf(s.reporterSets, d)
	return d, true
}

// configuredDomain is the configured domain a policy domain counts for
// (the most specific at or above it; an IDN is matched by its A-label),
// and whether there is one; with no domains configured, every policy
// domain is accepted. s.mu is held (read is enough).
func (s *Store) configuredDomain(policyDomain string) (string, bool) {
	if len(s.opts.Domains) == 0 {
		return "", true
	}
	best := config.Covering(config.NormalizeDomain(policyDomain), s.opts.Domains)
	return best, best != ""
}

// reporterLabel caps the distinct reporters of a domain.
func (s *Store) reporterLabel(b *batch, domain, reporter string) string {
	set := setOf(s.reporterSets, domain)
	if _, known := set[reporter]; known {
		return reporter
	}
	if len(set) >= s.opts.Limits.ReportersPerDomain {
		b.totals.add(overflowFamily, 1, "reporter")
		reporter = otherLabel
	}
	set[reporter] = struct{}{}
	return reporter
}
