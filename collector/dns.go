package collector

import (
	"encoding/json"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/dnsmon"
)

// DNS records of the configured domains, as the DNS monitor observes them:
// their current state, the history of their text (the timeline), and
// lookup errors. They are saved in the archive with the counters.

type dnsKey struct{ domain, record string }

// staleDNS is how long a record may go unobserved before it is no longer
// served: longer than any poll interval and TTL in use.
const staleDNS = 72 * time.Hour

// maxDNSHistory bounds the changes kept per record.
const maxDNSHistory = 50

type dnsEvent struct {
	Time  int64    `json:"time"`
	Texts []string `json:"texts"`
}

type dnsRecord struct {
	Present    bool              `json:"present"`
	Valid      bool              `json:"valid"`
	Problem    string            `json:"problem,omitempty"`
	Hash       float64           `json:"hash"`
	Texts      []string          `json:"texts,omitempty"`
	LastChange int64             `json:"last_change"`
	Checked    int64             `json:"checked"`
	History    []dnsEvent        `json:"-"`                // the latest changes; the archive keeps them all
	Errors     map[string]uint64 `json:"errors,omitempty"` // lookup errors by rcode
	Lookups    int               `json:"spf_lookups,omitempty"`
	Void       int               `json:"spf_void_lookups,omitempty"`
	KeyBits    int               `json:"dkim_key_bits,omitempty"`
	KeyType    string            `json:"dkim_key_type,omitempty"`
	Policy     map[string]string `json:"dmarc_policy,omitempty"`
}

// state is the record as the archive keeps it.
func (r *dnsRecord) state() []byte {
	data, _ := json.Marshal(r) // strings, numbers and maps of them
	return data
}

// loadDNS reads the DNS records and their latest changes from the archive.
func (s *Store) loadDNS() error {
	if err := s.arc.DNS(func(d archive.DNSRecord) {
		rec := &dnsRecord{}
		if err := json.Unmarshal(d.State, rec); err != nil {
			s.opts.Logger.Warn("DNS record in the archive", "domain", d.Domain, "record", d.Record, "err", err)
			return
		}
		if rec.Errors == nil {
			rec.Errors = map[string]uint64{}
		}
		s.dns[dnsKey{d.Domain, d.Record}] = rec
	}); err != nil {
		return err
	}
	return s.arc.DNSLog(func(c archive.DNSChange) {
		if rec := s.dns[dnsKey{c.Domain, c.Record}]; rec != nil {
			rec.History = appendChange(rec.History, dnsEvent{Time: c.Time, Texts: c.Texts})
		}
	})
}

// appendChange appends a change, keeping the latest maxDNSHistory.
func appendChange(h []dnsEvent, e dnsEvent) []dnsEvent {
	h = append(h, e)
	if len(h) > maxDNSHistory {
		h = h[len(h)-maxDNSHistory:]
	}
	return h
}

func (r *dnsRecord) clone() *dnsRecord {
	c := *r
	c.Texts = slices.Clone(r.Texts)
	c.History = slices.Clone(r.History)
	c.Errors = map[string]uint64{}
	for k, v := range r.Errors {
		c.Errors[k] = v
	}
	return &c
}

// ObserveDNS records an observation of the DNS monitor. A failed lookup
// counts an error and changes nothing else: a transient SERVFAIL or
// timeout is not a change.
func (s *Store) ObserveDNS(o *dnsmon.Observation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := dnsKey{o.Domain, o.Name()}
	var rec *dnsRecord
	if r := s.pending.dns[k]; r != nil {
		rec = r
	} else if r := s.dns[k]; r != nil {
		rec = r.clone()
	} else {
		rec = &dnsRecord{Errors: map[string]uint64{}}
	}
	s.pending.dns[k] = rec
	now := s.opts.Now().Unix()
	if o.Err != nil {
		rec.Errors[o.Rcode]++
		return
	}
	if !slices.Equal(rec.Texts, o.Texts) || rec.Checked == 0 {
		if rec.Checked != 0 || len(o.Texts) > 0 {
			rec.LastChange = now
			rec.History = appendChange(rec.History, dnsEvent{Time: now, Texts: o.Texts})
			s.pending.dnsLog = append(s.pending.dnsLog, archive.DNSChange{Domain: k.domain, Record: k.record, Time: now, Texts: o.Texts})
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
			return truncateLabel(strings.Join(out, ","), 200)
		}
		testing := "n"
		if d.Testing {
			testing = "y"
		}
		rec.Policy = map[string]string{"p": d.P, "sp": d.SP, "np": d.NP, "adkim": d.ADKIM, "aspf": d.ASPF,
			"testing": testing, "rua_domains": hosts(d.RUA), "ruf_domains": hosts(d.RUF)}
	}
}

// visitDNS emits the DNS families, one after the other. s.mu is held.
func (s *Store) visitDNS(fn func(f *family, v float64, labelValues ...string), shown func(string) bool) {
	b := func(v bool) float64 {
		if v {
			return 1
		}
		return 0
	}
	// A record no longer watched (a DKIM selector dropped from the
	// configuration or no longer in reports) is not shown once it has not
	// been looked up for staleDNS.
	cutoff := s.opts.Now().Add(-staleDNS).Unix()
	each := func(emit func(k dnsKey, r *dnsRecord)) {
		for k, r := range s.dns {
			if shown(k.domain) && (r.Checked == 0 || r.Checked >= cutoff) {
				emit(k, r)
			}
		}
	}
	each(func(k dnsKey, r *dnsRecord) { fn(dnsPresentFamily, b(r.Present), k.domain, k.record) })
	each(func(k dnsKey, r *dnsRecord) { fn(dnsValidFamily, b(r.Valid), k.domain, k.record) })
	each(func(k dnsKey, r *dnsRecord) {
		if !r.Valid && r.Problem != "" && r.Checked != 0 {
			fn(dnsErrorFamily, 1, k.domain, k.record, r.Problem)
		}
	})
	each(func(k dnsKey, r *dnsRecord) { fn(dnsHashFamily, r.Hash, k.domain, k.record) })
	each(func(k dnsKey, r *dnsRecord) {
		if r.LastChange > 0 {
			fn(dnsChangeFamily, float64(r.LastChange), k.domain, k.record)
		}
	})
	each(func(k dnsKey, r *dnsRecord) {
		for rcode, n := range r.Errors {
			fn(dnsLookupErrorsFamily, float64(n), k.domain, k.record, rcode)
		}
	})
	each(func(k dnsKey, r *dnsRecord) {
		if k.record == dnsmon.KindSPF && r.Present {
			fn(spfLookupsFamily, float64(r.Lookups), k.domain)
		}
	})
	each(func(k dnsKey, r *dnsRecord) {
		if k.record == dnsmon.KindSPF && r.Present {
			fn(spfVoidFamily, float64(r.Void), k.domain)
		}
	})
	each(func(k dnsKey, r *dnsRecord) {
		if strings.HasPrefix(k.record, dnsmon.KindDKIM+":") && r.Present {
			fn(dkimBitsFamily, float64(r.KeyBits), k.domain, k.record, keyType(r.KeyType))
		}
	})
	each(func(k dnsKey, r *dnsRecord) {
		if p := r.Policy; p != nil {
			fn(dmarcPolicyFamily, 1, k.domain, p["p"], p["sp"], p["np"], p["adkim"], p["aspf"], p["testing"], p["rua_domains"], p["ruf_domains"])
		}
	})
	each(func(k dnsKey, r *dnsRecord) {
		if k.record == dnsmon.KindSPF && r.Checked != 0 {
			fn(spfValidFamily, b(r.Valid), k.domain)
		}
	})
	each(func(k dnsKey, r *dnsRecord) {
		if k.record == dnsmon.KindSPF && !r.Valid && r.Problem != "" && r.Checked != 0 {
			fn(spfErrorFamily, 1, k.domain, r.Problem)
		}
	})
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

func truncateLabel(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// Selectors returns the DKIM selectors seen in the reports of domain.
func (s *Store) Selectors(domain string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for sel := range s.selectors[domain] {
		out = append(out, sel)
	}
	sort.Strings(out)
	return out
}

// TimelineHandler serves the history of every DNS record as JSON.
func TimelineHandler(store *Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		type entry struct {
			Domain  string     `json:"domain"`
			Record  string     `json:"record"`
			Changes []dnsEvent `json:"changes"`
		}
		var out []entry
		store.mu.RLock()
		for k, rec := range store.dns {
			out = append(out, entry{k.domain, k.record, slices.Clone(rec.History)})
		}
		store.mu.RUnlock()
		sort.Slice(out, func(i, j int) bool {
			return out[i].Domain+"\x00"+out[i].Record < out[j].Domain+"\x00"+out[j].Record
		})
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	})
}
