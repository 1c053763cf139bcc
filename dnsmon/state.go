package dnsmon

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// State is what the monitor knows of every watched record: its last
// observation, the latest changes of its text (the timeline), and lookup
// errors. It is loaded from the archive, saved there after each round, and
// served as metrics (a prometheus.Collector) and on /dns-timeline. One
// State lives as long as the exporter; monitors come and go with reloads.
type State struct {
	arc *archive.Archive
	now func() time.Time
	log *slog.Logger

	mu      sync.RWMutex
	shown   map[string]bool // the configured domains; nil shows every domain
	records map[recordKey]*Record
	dirty   map[recordKey]bool
	changes []archive.DNSChange // not saved yet
}

type recordKey struct{ domain, record string }

// Record is the last observation of a record, as the archive keeps it.
type Record struct {
	Present    bool              `json:"present"`
	Valid      bool              `json:"valid"`
	Problem    string            `json:"problem,omitempty"`
	Hash       float64           `json:"hash"`
	Texts      []string          `json:"texts,omitempty"`
	LastChange int64             `json:"last_change"`
	Checked    int64             `json:"checked"`
	History    []Change          `json:"-"`                // the latest changes; the archive keeps them all
	Errors     map[string]uint64 `json:"errors,omitempty"` // lookup errors by rcode
	Lookups    int               `json:"spf_lookups,omitempty"`
	Void       int               `json:"spf_void_lookups,omitempty"`
	KeyBits    int               `json:"dkim_key_bits,omitempty"`
	KeyType    string            `json:"dkim_key_type,omitempty"`
	Policy     map[string]string `json:"dmarc_policy,omitempty"`
}

// Change is a change of a record's text.
type Change struct {
	Time  int64    `json:"time"`
	Texts []string `json:"texts"`
}

// staleAfter is how long a record may go unobserved before it is no longer
// served: longer than any poll interval and TTL in use. A record no longer
// watched (a DKIM selector dropped) goes away after it.
const staleAfter = 72 * time.Hour

// maxHistory bounds the changes kept in memory per record.
const maxHistory = 50

// LoadState reads the records and their latest changes from the archive.
func LoadState(arc *archive.Archive, now func() time.Time, log *slog.Logger) (*State, error) {
	if now == nil {
		now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &State{arc: arc, now: now, log: log, records: map[recordKey]*Record{}, dirty: map[recordKey]bool{}}
	if err := arc.DNS(func(d archive.DNSRecord) {
		rec := &Record{}
		if err := json.Unmarshal(d.State, rec); err != nil {
			log.Warn("DNS record in the archive", "domain", d.Domain, "record", d.Record, "err", err)
			return
		}
		if rec.Errors == nil {
			rec.Errors = map[string]uint64{}
		}
		s.records[recordKey{d.Domain, d.Record}] = rec
	}); err != nil {
		return nil, err
	}
	err := arc.DNSLog(func(c archive.DNSChange) {
		if rec := s.records[recordKey{c.Domain, c.Record}]; rec != nil {
			rec.History = appendChange(rec.History, Change{Time: c.Time, Texts: c.Texts})
		}
	})
	return s, err
}

// appendChange appends a change, keeping the latest maxHistory.
func appendChange(h []Change, c Change) []Change {
	h = append(h, c)
	if len(h) > maxHistory {
		h = h[len(h)-maxHistory:]
	}
	return h
}

// SetDomains sets the domains whose records are served: the configured
// ones; none serves every domain observed.
func (s *State) SetDomains(domains []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shown = nil
	if len(domains) > 0 {
		s.shown = map[string]bool{}
		for _, d := range domains {
			s.shown[d] = true
		}
	}
}

// Observe records an observation. A failed lookup counts an error and
// changes nothing else: a transient SERVFAIL or timeout is not a change.
func (s *State) Observe(o *Observation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := recordKey{o.Domain, o.Name()}
	rec := s.records[k]
	if rec == nil {
		rec = &Record{Errors: map[string]uint64{}}
		s.records[k] = rec
	}
	s.dirty[k] = true
	now := s.now().Unix()
	if o.Err != nil {
		rec.Errors[o.Rcode]++
		return
	}
	if !slices.Equal(rec.Texts, o.Texts) || rec.Checked == 0 {
		if rec.Checked != 0 || len(o.Texts) > 0 {
			rec.LastChange = now
			rec.History = appendChange(rec.History, Change{Time: now, Texts: o.Texts})
			s.changes = append(s.changes, archive.DNSChange{Domain: k.domain, Record: k.record, Time: now, Texts: o.Texts})
		}
	}
	rec.Checked = now
	rec.Texts = o.Texts
	rec.Present = len(o.Texts) > 0
	rec.Valid = o.Valid
	rec.Problem = o.Problem
	rec.Hash = o.Hash()
	rec.Lookups, rec.Void, rec.KeyBits, rec.KeyType = 0, 0, 0, ""
	if o.SPF != nil {
		rec.Lookups, rec.Void = o.SPF.Lookups, o.SPF.VoidLookups
	}
	if o.DKIM != nil {
		rec.KeyBits, rec.KeyType = o.DKIM.Bits, o.DKIM.Type
	}
	rec.Policy = nil
	if d := o.DMARC; d != nil {
		hosts := func(uris []string) string {
			var out []string
			for _, u := range uris {
				u, _, _ = strings.Cut(u, "!") // a size limit: mailto:a@b.example!10m
				if i := strings.LastIndexByte(u, '@'); i >= 0 {
					out = append(out, strings.ToLower(u[i+1:]))
				}
			}
			return cutAt(strings.Join(out, ","), 200)
		}
		testing := "n"
		if d.Testing {
			testing = "y"
		}
		rec.Policy = map[string]string{"p": d.P, "sp": d.SP, "np": d.NP, "adkim": d.ADKIM, "aspf": d.ASPF,
			"testing": testing, "rua_domains": hosts(d.RUA), "ruf_domains": hosts(d.RUF)}
	}
}

// cutAt cuts a label value to at most n bytes.
func cutAt(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Save writes the records observed since the last save, and their
// changes, to the archive in one transaction; after a failure they are
// written with the next save.
func (s *State) Save() error {
	s.mu.Lock()
	b := &archive.Batch{DNSLog: s.changes}
	for k := range s.dirty {
		data, _ := json.Marshal(s.records[k]) // strings, numbers and maps of them
		b.DNS = append(b.DNS, archive.DNSRecord{Domain: k.domain, Record: k.record, State: data})
	}
	s.changes, s.dirty = nil, map[recordKey]bool{}
	s.mu.Unlock()
	err := s.arc.Apply(b)
	if err != nil {
		s.mu.Lock()
		s.changes = append(b.DNSLog, s.changes...)
		for _, d := range b.DNS {
			s.dirty[recordKey{d.Domain, d.Record}] = true
		}
		s.mu.Unlock()
	}
	return err
}

// The metrics of the DNS monitor.
var (
	presentDesc = prometheus.NewDesc("dmarc_dns_record_present",
		"1 when the domain publishes the record (dmarc, spf, mta-sts, tlsrpt, bimi, dkim:<selector>), else 0.",
		[]string{"domain", "record"}, nil)
	validDesc = prometheus.NewDesc("dmarc_dns_record_valid",
		"1 when the record is present and sound, else 0; dmarc_dns_record_error says why not.",
		[]string{"domain", "record"}, nil)
	errorDesc = prometheus.NewDesc("dmarc_dns_record_error",
		"1 for the reason a record is not valid: missing, multiple_records, syntax, too_many_lookups, too_many_void_lookups, include_loop, include_missing, lookup_error, revoked, weak_key, no_policy, unauthorized_destination.",
		[]string{"domain", "record", "reason"}, nil)
	hashDesc = prometheus.NewDesc("dmarc_dns_record_hash",
		"A stable hash of the record's normalised text (exact in a float64); it changes when the record does. 0 when absent.",
		[]string{"domain", "record"}, nil)
	changeDesc = prometheus.NewDesc("dmarc_dns_record_last_change_timestamp_seconds",
		"When the record's text was last seen to change (a failed lookup is not a change).",
		[]string{"domain", "record"}, nil)
	lookupErrorsDesc = prometheus.NewDesc("dmarc_dns_lookup_errors_total",
		"Failed lookups of a record, by rcode (servfail, refused, timeout, ...).",
		[]string{"domain", "record", "rcode"}, nil)
	spfLookupsDesc = prometheus.NewDesc("dmarc_spf_dns_lookups",
		"DNS lookups the domain's SPF record costs a receiver (RFC 7208 limit: 10).",
		[]string{"domain"}, nil)
	spfVoidDesc = prometheus.NewDesc("dmarc_spf_void_lookups",
		"Lookups of the domain's SPF record that find nothing (RFC 7208 limit: 2).",
		[]string{"domain"}, nil)
	dkimBitsDesc = prometheus.NewDesc("dmarc_dkim_key_bits",
		"Size of the DKIM key published for a selector (record dkim:<selector>), by key type (rsa, ed25519); 0 when revoked or unreadable.",
		[]string{"domain", "record", "key_type"}, nil)
	policyDesc = prometheus.NewDesc("dmarc_dns_policy_info",
		"The DMARC policy that applies to the domain (its own record's, or an ancestor's by the tree walk), as labels; always 1.",
		[]string{"domain", "p", "sp", "np", "adkim", "aspf", "testing", "rua_domains", "ruf_domains"}, nil)
	spfValidDesc = prometheus.NewDesc("dmarc_spf_valid",
		"1 when the domain's SPF record is sound and within the RFC 7208 limits; dmarc_spf_error says why not.",
		[]string{"domain"}, nil)
	spfErrorDesc = prometheus.NewDesc("dmarc_spf_error",
		"1 for the reason the SPF record is not valid: missing, multiple_records, syntax, too_many_lookups, too_many_void_lookups, include_loop, include_missing, lookup_error.",
		[]string{"domain", "reason"}, nil)
)

// Describe implements prometheus.Collector.
func (s *State) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{presentDesc, validDesc, errorDesc, hashDesc, changeDesc, lookupErrorsDesc,
		spfLookupsDesc, spfVoidDesc, dkimBitsDesc, policyDesc, spfValidDesc, spfErrorDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector: every record of a shown domain
// observed within staleAfter.
func (s *State) Collect(ch chan<- prometheus.Metric) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	cutoff := s.now().Add(-staleAfter).Unix()
	for k, r := range s.records {
		if s.shown != nil && !s.shown[k.domain] || r.Checked != 0 && r.Checked < cutoff {
			continue
		}
		checked := r.Checked != 0
		gauge(presentDesc, b(r.Present), k.domain, k.record)
		gauge(validDesc, b(r.Valid), k.domain, k.record)
		if !r.Valid && r.Problem != "" && checked {
			gauge(errorDesc, 1, k.domain, k.record, r.Problem)
		}
		gauge(hashDesc, r.Hash, k.domain, k.record)
		if r.LastChange > 0 {
			gauge(changeDesc, float64(r.LastChange), k.domain, k.record)
		}
		for rcode, n := range r.Errors {
			ch <- prometheus.MustNewConstMetric(lookupErrorsDesc, prometheus.CounterValue, float64(n), k.domain, k.record, rcode)
		}
		if k.record == KindSPF && r.Present {
			gauge(spfLookupsDesc, float64(r.Lookups), k.domain)
			gauge(spfVoidDesc, float64(r.Void), k.domain)
		}
		if strings.HasPrefix(k.record, KindDKIM+":") && r.Present {
			gauge(dkimBitsDesc, float64(r.KeyBits), k.domain, k.record, keyType(r.KeyType))
		}
		if p := r.Policy; p != nil {
			gauge(policyDesc, 1, k.domain, p["p"], p["sp"], p["np"], p["adkim"], p["aspf"], p["testing"], p["rua_domains"], p["ruf_domains"])
		}
		if k.record == KindSPF && checked {
			gauge(spfValidDesc, b(r.Valid), k.domain)
			if !r.Valid && r.Problem != "" {
				gauge(spfErrorDesc, 1, k.domain, r.Problem)
			}
		}
	}
}

// keyType maps a DKIM key type to a closed set.
func keyType(t string) string {
	switch t {
	case "rsa", "ed25519":
		return t
	case "":
		return "rsa" // RFC 6376 §3.6.1: the default
	}
	return "other"
}

// TimelineHandler serves the latest changes of every record as JSON.
func (s *State) TimelineHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		type entry struct {
			Domain  string   `json:"domain"`
			Record  string   `json:"record"`
			Changes []Change `json:"changes"`
		}
		var out []entry
		s.mu.RLock()
		for k, rec := range s.records {
			out = append(out, entry{k.domain, k.record, slices.Clone(rec.History)})
		}
		s.mu.RUnlock()
		sort.Slice(out, func(i, j int) bool {
			return out[i].Domain+"\x00"+out[i].Record < out[j].Domain+"\x00"+out[j].Record
		})
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	})
}

// Published is a domain's DMARC record as the monitor last saw it.
type Published struct {
	Text    string       // the record, "" when none was found
	Record  *DMARCRecord // nil when none was found or it does not parse
	Checked time.Time
}

// DMARC returns the DMARC record of a domain as last observed; ok is
// false when the monitor has not looked it up.
func (s *State) DMARC(domain string) (p Published, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	rec := s.records[recordKey{domain, KindDMARC}]
	if rec == nil || rec.Checked == 0 {
		return Published{}, false
	}
	p.Checked = time.Unix(rec.Checked, 0).UTC()
	for _, t := range rec.Texts {
		if isDMARCRecord(t) {
			p.Text = t
			p.Record, _ = parseDMARC(domain, t)
			break
		}
	}
	return p, true
}
