package collector

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// The counted data. Every key field holds a bounded label value (see
// labels.go); values from closed sets are the constants of package report.

type msgKey struct {
	domain, reporter              string
	disposition, dmarc, dkim, spf string
}

type reporterKey struct{ domain, reporter string }

// reporterStats are the per-(domain, reporter) counters.
type reporterStats struct {
	Reports    uint64 `json:"reports"`
	Duplicates uint64 `json:"duplicates"`
	// InvalidRecords are records flagged by the parser (wrong count or IP).
	InvalidRecords uint64 `json:"invalid_records"`
	// LastEnd is the end of the newest report's date range, Unix seconds.
	LastEnd int64 `json:"last_end"`
	// LastReceived is when the newest report was ingested, Unix seconds.
	LastReceived int64 `json:"last_received,omitempty"`
	// Ends are the date range ends of the latest reports (at most
	// maxEnds, ascending), from which the watchdog learns the interval.
	Ends []int64 `json:"ends,omitempty"`
	// Anomalies of the date range, by kind (future, old, long).
	Future uint64 `json:"future"`
	Old    uint64 `json:"old"`
	Long   uint64 `json:"long"`
}

// maxSelectors bounds the DKIM selectors learned per domain from reports.
const maxSelectors = 10

func addSelectors(m map[string]map[string]struct{}, domain string, sels map[string]struct{}) {
	set := m[domain]
	if set == nil {
		set = map[string]struct{}{}
		m[domain] = set
	}
	for s := range sels {
		if len(set) < maxSelectors {
			set[s] = struct{}{}
		}
	}
}

// maxEnds bounds the report ends kept per reporter.
const maxEnds = 16

// mergeEnds merges two ascending lists of report ends, without repeats,
// keeping the latest maxEnds.
func mergeEnds(a, b []int64) []int64 {
	if len(b) == 0 {
		return a
	}
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	out = slices.Compact(out)
	if len(out) > maxEnds {
		out = out[len(out)-maxEnds:]
	}
	return out
}

type overrideKey struct{ domain, reporter, reason string }

type sourceJSON struct {
	Domain      string `json:"domain"`
	ASN         string `json:"asn"`
	Org         string `json:"org"`
	Country     string `json:"country"`
	Name        string `json:"name"`
	Class       string `json:"class"`
	Disposition string `json:"disposition"`
	DMARC       string `json:"dmarc"`
	Value       uint64 `json:"value"`
}

type rejectKey struct{ source, reason string }

// counters is everything that is counted. The live state and a pending
// batch have the same shape: a batch holds increments.
type counters struct {
	messages  map[msgKey]uint64
	reporters map[reporterKey]*reporterStats
	overrides map[overrideKey]uint64
	sources   map[sourceKey]uint64 // messages by source identity and class
	domains   map[string]uint64    // reports per domain
	rejected  map[rejectKey]uint64
	overflow  map[string]uint64 // label name -> values sent to "other"
	// dedup maps a report's identity to when it was first ingested.
	dedup map[string]int64
	// files maps source + "\x00" + path to the mark (size, mtime) of a
	// file already read.
	files map[string]string

	tlsReporters     map[reporterKey]*kindStats
	tlsSessions      map[tlsKey]uint64
	tlsFailed        map[tlsKey]uint64
	failureReporters map[reporterKey]*kindStats
	failures         map[failureKey]uint64
	samples          []Sample // redacted failure reports, oldest first

	dns       map[dnsKey]*dnsRecord          // as observed; a batch holds replacements
	selectors map[string]map[string]struct{} // DKIM selectors seen in reports, per domain
}

func newCounters() *counters {
	return &counters{
		messages:  map[msgKey]uint64{},
		reporters: map[reporterKey]*reporterStats{},
		overrides: map[overrideKey]uint64{},
		sources:   map[sourceKey]uint64{},
		domains:   map[string]uint64{},
		rejected:  map[rejectKey]uint64{},
		overflow:  map[string]uint64{},
		dedup:     map[string]int64{},
		files:     map[string]string{},

		tlsReporters:     map[reporterKey]*kindStats{},
		tlsSessions:      map[tlsKey]uint64{},
		tlsFailed:        map[tlsKey]uint64{},
		failureReporters: map[reporterKey]*kindStats{},
		failures:         map[failureKey]uint64{},
		dns:              map[dnsKey]*dnsRecord{},
		selectors:        map[string]map[string]struct{}{},
	}
}

func (c *counters) empty() bool {
	return len(c.messages) == 0 && len(c.reporters) == 0 && len(c.overrides) == 0 && len(c.sources) == 0 && len(c.domains) == 0 &&
		len(c.rejected) == 0 && len(c.overflow) == 0 && len(c.dedup) == 0 && len(c.files) == 0 &&
		len(c.tlsReporters) == 0 && len(c.tlsSessions) == 0 && len(c.tlsFailed) == 0 &&
		len(c.failureReporters) == 0 && len(c.failures) == 0 && len(c.samples) == 0 &&
		len(c.dns) == 0 && len(c.selectors) == 0
}

func (c *counters) reporter(k reporterKey) *reporterStats {
	r := c.reporters[k]
	if r == nil {
		r = &reporterStats{}
		c.reporters[k] = r
	}
	return r
}

// clone returns a deep copy of c.
func (c *counters) clone() *counters {
	n := newCounters()
	n.merge(c, len(c.samples))
	return n
}

// merge adds the increments of b to c, keeping at most maxSamples samples.
func (c *counters) merge(b *counters, maxSamples int) {
	for _, m := range []struct{ dst, src map[reporterKey]*kindStats }{
		{c.tlsReporters, b.tlsReporters}, {c.failureReporters, b.failureReporters}} {
		for k, v := range m.src {
			st := stats(m.dst, k)
			st.Reports += v.Reports
			st.Duplicates += v.Duplicates
		}
	}
	for k, v := range b.tlsSessions {
		c.tlsSessions[k] += v
	}
	for k, v := range b.tlsFailed {
		c.tlsFailed[k] += v
	}
	for k, v := range b.failures {
		c.failures[k] += v
	}
	for k, v := range b.dns {
		c.dns[k] = v.clone()
	}
	for d, sels := range b.selectors {
		addSelectors(c.selectors, d, sels)
	}
	c.samples = append(c.samples, b.samples...)
	if over := len(c.samples) - maxSamples; over > 0 {
		c.samples = slices.Delete(c.samples, 0, over)
	}
	for k, v := range b.messages {
		c.messages[k] += v
	}
	for k, v := range b.reporters {
		r := c.reporter(k)
		r.Reports += v.Reports
		r.Duplicates += v.Duplicates
		r.InvalidRecords += v.InvalidRecords
		r.LastEnd = max(r.LastEnd, v.LastEnd)
		r.LastReceived = max(r.LastReceived, v.LastReceived)
		r.Ends = mergeEnds(r.Ends, v.Ends)
		r.Future += v.Future
		r.Old += v.Old
		r.Long += v.Long
	}
	for k, v := range b.overrides {
		c.overrides[k] += v
	}
	for k, v := range b.sources {
		c.sources[k] += v
	}
	for k, v := range b.domains {
		c.domains[k] += v
	}
	for k, v := range b.rejected {
		c.rejected[k] += v
	}
	for k, v := range b.overflow {
		c.overflow[k] += v
	}
	for k, v := range b.dedup {
		c.dedup[k] = v
	}
	for k, v := range b.files {
		c.files[k] = v
	}
}

// stateFile is the JSON form of the live counters.
type stateFile struct {
	Version int `json:"version"`
	// Created is when the state began, Unix seconds: the watchdog's
	// grace period for expected reporters not seen yet starts there.
	Created   int64             `json:"created"`
	Messages  []messageJSON     `json:"messages"`
	Reporters []reporterJSON    `json:"reporters"`
	Overrides []overrideJSON    `json:"overrides"`
	Sources   []sourceJSON      `json:"sources,omitempty"`
	Domains   map[string]uint64 `json:"domains"`
	Rejected  []rejectJSON      `json:"rejected"`
	Overflow  map[string]uint64 `json:"overflow"`
	Dedup     map[string]int64  `json:"dedup"`
	Files     map[string]string `json:"files"`

	TLSReporters     []kindJSON    `json:"smtp_tls_reporters,omitempty"`
	TLSSessions      []tlsJSON     `json:"smtp_tls_sessions,omitempty"`
	TLSFailed        []tlsJSON     `json:"smtp_tls_failed_sessions,omitempty"`
	FailureReporters []kindJSON    `json:"failure_reporters,omitempty"`
	Failures         []failureJSON `json:"failures,omitempty"`
	Samples          []Sample      `json:"failure_samples,omitempty"`

	DNS       []dnsJSON           `json:"dns,omitempty"`
	Selectors map[string][]string `json:"dkim_selectors,omitempty"`
}

type dnsJSON struct {
	Domain string `json:"domain"`
	Record string `json:"record"`
	dnsRecord
}

type kindJSON struct {
	Domain   string `json:"domain"`
	Reporter string `json:"reporter"`
	kindStats
}

type tlsJSON struct {
	Domain     string `json:"domain"`
	Reporter   string `json:"reporter"`
	PolicyType string `json:"policy_type"`
	Result     string `json:"result"`
	Value      uint64 `json:"value"`
}

type failureJSON struct {
	Domain         string `json:"domain"`
	Reporter       string `json:"reporter"`
	AuthFailure    string `json:"auth_failure"`
	DeliveryResult string `json:"delivery_result"`
	Value          uint64 `json:"value"`
}

type messageJSON struct {
	Domain      string `json:"domain"`
	Reporter    string `json:"reporter"`
	Disposition string `json:"disposition"`
	DMARC       string `json:"dmarc"`
	DKIM        string `json:"dkim"`
	SPF         string `json:"spf"`
	Value       uint64 `json:"value"`
}

type reporterJSON struct {
	Domain   string `json:"domain"`
	Reporter string `json:"reporter"`
	reporterStats
}

type overrideJSON struct {
	Domain   string `json:"domain"`
	Reporter string `json:"reporter"`
	Reason   string `json:"reason"`
	Value    uint64 `json:"value"`
}

type rejectJSON struct {
	Source string `json:"source"`
	Reason string `json:"reason"`
	Value  uint64 `json:"value"`
}

const stateVersion = 1

// toFile copies the counters into their JSON form, which can then be
// written without holding the store's lock.
func (c *counters) toFile() *stateFile {
	f := &stateFile{Version: stateVersion, Domains: maps.Clone(c.domains), Overflow: maps.Clone(c.overflow),
		Dedup: maps.Clone(c.dedup), Files: maps.Clone(c.files)}
	for k, v := range c.messages {
		f.Messages = append(f.Messages, messageJSON{k.domain, k.reporter, k.disposition, k.dmarc, k.dkim, k.spf, v})
	}
	for k, v := range c.reporters {
		f.Reporters = append(f.Reporters, reporterJSON{k.domain, k.reporter, *v})
	}
	for k, v := range c.overrides {
		f.Overrides = append(f.Overrides, overrideJSON{k.domain, k.reporter, k.reason, v})
	}
	for k, v := range c.sources {
		f.Sources = append(f.Sources, sourceJSON{k.domain, k.asn, k.org, k.country, k.name, k.class, k.disposition, k.dmarc, v})
	}
	for k, v := range c.rejected {
		f.Rejected = append(f.Rejected, rejectJSON{k.source, k.reason, v})
	}
	for k, v := range c.tlsReporters {
		f.TLSReporters = append(f.TLSReporters, kindJSON{k.domain, k.reporter, *v})
	}
	for k, v := range c.tlsSessions {
		f.TLSSessions = append(f.TLSSessions, tlsJSON{k.domain, k.reporter, k.policyType, k.result, v})
	}
	for k, v := range c.tlsFailed {
		f.TLSFailed = append(f.TLSFailed, tlsJSON{k.domain, k.reporter, k.policyType, k.result, v})
	}
	for k, v := range c.failureReporters {
		f.FailureReporters = append(f.FailureReporters, kindJSON{k.domain, k.reporter, *v})
	}
	for k, v := range c.failures {
		f.Failures = append(f.Failures, failureJSON{k.domain, k.reporter, k.authFailure, k.deliveryResult, v})
	}
	f.Samples = slices.Clone(c.samples)
	for k, v := range c.dns {
		f.DNS = append(f.DNS, dnsJSON{k.domain, k.record, *v.clone()})
	}
	f.Selectors = map[string][]string{}
	for d, sels := range c.selectors {
		for s := range sels {
			f.Selectors[d] = append(f.Selectors[d], s)
		}
	}
	return f
}

// fromFile rebuilds counters, interning every label value.
func fromFile(f *stateFile, in *interner) *counters {
	c := newCounters()
	for _, m := range f.Messages {
		c.messages[msgKey{in.get(m.Domain), in.get(m.Reporter), in.get(m.Disposition), in.get(m.DMARC), in.get(m.DKIM), in.get(m.SPF)}] = m.Value
	}
	for _, r := range f.Reporters {
		st := r.reporterStats
		c.reporters[reporterKey{in.get(r.Domain), in.get(r.Reporter)}] = &st
	}
	for _, o := range f.Overrides {
		c.overrides[overrideKey{in.get(o.Domain), in.get(o.Reporter), in.get(o.Reason)}] = o.Value
	}
	for _, x := range f.Sources {
		c.sources[sourceKey{in.get(x.Domain), in.get(x.ASN), in.get(x.Org), in.get(x.Country), in.get(x.Name),
			in.get(x.Class), in.get(x.Disposition), in.get(x.DMARC)}] = x.Value
	}
	for k, v := range f.Domains {
		c.domains[in.get(k)] = v
	}
	for _, r := range f.Rejected {
		c.rejected[rejectKey{in.get(r.Source), in.get(r.Reason)}] = r.Value
	}
	for k, v := range f.Overflow {
		c.overflow[k] = v
	}
	for k, v := range f.Dedup {
		c.dedup[k] = v
	}
	for k, v := range f.Files {
		c.files[k] = v
	}
	for _, m := range []struct {
		dst map[reporterKey]*kindStats
		src []kindJSON
	}{{c.tlsReporters, f.TLSReporters}, {c.failureReporters, f.FailureReporters}} {
		for _, r := range m.src {
			st := r.kindStats
			m.dst[reporterKey{in.get(r.Domain), in.get(r.Reporter)}] = &st
		}
	}
	for _, m := range []struct {
		dst map[tlsKey]uint64
		src []tlsJSON
	}{{c.tlsSessions, f.TLSSessions}, {c.tlsFailed, f.TLSFailed}} {
		for _, t := range m.src {
			m.dst[tlsKey{in.get(t.Domain), in.get(t.Reporter), in.get(t.PolicyType), in.get(t.Result)}] = t.Value
		}
	}
	for _, x := range f.Failures {
		c.failures[failureKey{in.get(x.Domain), in.get(x.Reporter), in.get(x.AuthFailure), in.get(x.DeliveryResult)}] = x.Value
	}
	c.samples = f.Samples
	for _, d := range f.DNS {
		rec := d.dnsRecord
		if rec.Errors == nil {
			rec.Errors = map[string]uint64{}
		}
		c.dns[dnsKey{in.get(d.Domain), in.get(d.Record)}] = &rec
	}
	for d, sels := range f.Selectors {
		set := map[string]struct{}{}
		for _, s := range sels {
			set[s] = struct{}{}
		}
		addSelectors(c.selectors, d, set)
	}
	return c
}

// loadState reads the state file and when the state was created; a
// missing file is an empty state, created now.
func loadState(path string, in *interner, now time.Time) (*counters, time.Time, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return newCounters(), now, nil
	}
	if err != nil {
		return nil, time.Time{}, err
	}
	var f stateFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, time.Time{}, fmt.Errorf("state file %s: %w", path, err)
	}
	if f.Version != stateVersion {
		return nil, time.Time{}, fmt.Errorf("state file %s: version %d, want %d", path, f.Version, stateVersion)
	}
	created := now
	if f.Created > 0 {
		created = time.Unix(f.Created, 0)
	}
	return fromFile(&f, in), created, nil
}

// writeState writes the state atomically: a temporary file in the same
// directory, fsynced, renamed over the old one, and the directory fsynced,
// so that after a crash the file is either the old state or the new one.
func writeState(path string, f *stateFile) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing to remove
	w := bufio.NewWriterSize(tmp, 1<<20)
	if err := json.NewEncoder(w).Encode(f); err != nil {
		tmp.Close()
		return err
	}
	if err := w.Flush(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// interner keeps one copy of each label value.
type interner struct{ m map[string]string }

func newInterner() *interner { return &interner{m: map[string]string{}} }

func (in *interner) get(s string) string {
	if v, ok := in.m[s]; ok {
		return v
	}
	in.m[s] = s
	return s
}
