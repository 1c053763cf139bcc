package dnsmon

import (
	"context"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
)

// Record kinds watched per domain, with the name they live at and the
// prefix that tells them from other TXT records there.
const (
	KindDMARC  = "dmarc"
	KindSPF    = "spf"
	KindDKIM   = "dkim"
	KindMTASTS = "mta-sts"
	KindTLSRPT = "tlsrpt"
	KindBIMI   = "bimi"
)

// Observation is one lookup of one record of a domain.
type Observation struct {
	Domain string
	Kind   string
	// Selector is the DKIM selector, for KindDKIM.
	Selector string
	// Texts are the matching TXT records, normalised (trimmed) and sorted.
	Texts []string
	// Err is set when the lookup failed (SERVFAIL, timeout): nothing is
	// known, which is not a change. Rcode names it for a metric.
	Err   error
	Rcode string
	// Valid and Problem judge the record; Problem is a fixed code.
	Valid   bool
	Problem string
	// Extra holds what the record's gauges need (SPF lookups, DKIM key).
	SPF   *SPFResult
	DKIM  *DKIMKey
	DMARC *DMARCRecord
	// Inherited is where the DMARC record that governs a domain without
	// its own was found by the tree walk.
	Inherited string
	// TTL is the smallest TTL of the records: no resolver answers anew
	// sooner, so the monitor does not ask sooner.
	TTL time.Duration
}

// Name is the record's name in metrics: the kind, or "dkim:<selector>".
func (o *Observation) Name() string {
	if o.Kind == KindDKIM {
		return KindDKIM + ":" + o.Selector
	}
	return o.Kind
}

// Hash is a stable hash of the record set, below 2^53 so that a float64
// gauge holds it exactly; 0 when there is no record.
func (o *Observation) Hash() float64 {
	if len(o.Texts) == 0 {
		return 0
	}
	h := fnv.New64a()
	for _, t := range o.Texts {
		h.Write([]byte(t))
		h.Write([]byte{0})
	}
	return float64(h.Sum64() & (1<<53 - 1))
}

// Observe looks up and judges one record of domain.
func Observe(ctx context.Context, r *dnsclient.Resolver, domain, kind, selector string) *Observation {
	o := &Observation{Domain: domain, Kind: kind, Selector: selector}
	var name, prefix string
	switch kind {
	case KindDMARC:
		name, prefix = "_dmarc."+domain, "v=DMARC1"
	case KindSPF:
		name, prefix = domain, "v=spf1"
	case KindDKIM:
		name, prefix = selector+"._domainkey."+domain, ""
	case KindMTASTS:
		name, prefix = "_mta-sts."+domain, "v=STSv1"
	case KindTLSRPT:
		name, prefix = "_smtp._tls."+domain, "v=TLSRPTv1"
	case KindBIMI:
		name, prefix = "default._bimi."+domain, "v=BIMI1"
	}
	txts, ttl, err := r.TXTTTL(ctx, name)
	o.TTL = time.Duration(ttl) * time.Second
	if err != nil {
		o.failed(err)
		return o
	}
	for _, t := range txts {
		t = strings.TrimSpace(t)
		switch kind {
		case KindDMARC:
			if !isDMARCRecord(t) {
				continue
			}
		case KindSPF:
			if !isSPFRecord(t) {
				continue
			}
		case KindDKIM:
		default:
			if !strings.HasPrefix(strings.ToLower(t), strings.ToLower(prefix)+";") && !strings.EqualFold(t, prefix) &&
				!strings.HasPrefix(strings.ToLower(t), strings.ToLower(prefix)+" ") {
				continue
			}
		}
		o.Texts = append(o.Texts, t)
	}
	slices.Sort(o.Texts)
	o.judge(ctx, r)
	return o
}

// failed records a failed lookup: nothing is known, which is no change.
func (o *Observation) failed(err error) {
	o.Err, o.Rcode = err, "timeout"
	var re *dnsclient.RcodeError
	if errors.As(err, &re) {
		o.Rcode = strings.ToLower(dns.RcodeToString[re.Rcode])
	}
}

// judge sets Valid and Problem.
func (o *Observation) judge(ctx context.Context, r *dnsclient.Resolver) {
	switch {
	case len(o.Texts) == 0 && o.Kind == KindDMARC:
		// A subdomain without its own record is governed by an ancestor's.
		rec, at, err := TreeWalk(ctx, r, o.Domain)
		if err != nil {
			o.failed(err) // an ancestor's lookup failed: not known to be missing
			return
		}
		if rec != nil && at != o.Domain {
			inherited := *rec
			inherited.P = EffectivePolicy(rec, at, o.Domain)
			o.DMARC, o.Inherited, o.Valid = &inherited, at, true
			return
		}
		o.Problem = "missing"
		return
	case len(o.Texts) == 0:
		// SPF and DKIM must exist; the others are optional, and their
		// absence is no error (still not present, not valid).
		if o.Kind == KindSPF || o.Kind == KindDKIM {
			o.Problem = "missing"
		}
		return
	case len(o.Texts) > 1 && o.Kind != KindDKIM:
		o.Problem = "multiple_records"
		return
	}
	switch o.Kind {
	case KindDMARC:
		rec, fs := parseDMARC(o.Domain, o.Texts[0])
		o.DMARC = rec
		o.Valid = rec != nil
		if rec != nil {
			fs = append(fs, checkDestinations(ctx, r, o.Domain, rec)...)
		}
		for _, f := range fs {
			if f.Severity == SeverityError {
				o.Valid, o.Problem = false, f.Code
				break
			}
		}
	case KindSPF:
		o.SPF = evalSPF(ctx, r, o.Domain, o.Texts[0])
		if o.SPF.Problem == "lookup_error" {
			// An include could not be looked up: the record is not known
			// to be broken.
			o.Err, o.Rcode, o.SPF = errors.New(o.SPF.Detail), "include_failed", nil
			return
		}
		o.Valid, o.Problem = o.SPF.Problem == "", o.SPF.Problem
	case KindDKIM:
		o.DKIM = parseDKIM(o.Texts[0])
		o.Valid, o.Problem = o.DKIM.Problem == "", o.DKIM.Problem
	default:
		o.Valid = true // present, with its version tag
	}
}

// DKIMKey is what a DKIM key record (RFC 6376 §3.6.1) says of its key.
type DKIMKey struct {
	Type    string // rsa, ed25519
	Bits    int
	Revoked bool   // empty p=
	Problem string // "", revoked, syntax, weak_key
}

func parseDKIM(raw string) *DKIMKey {
	k := &DKIMKey{Type: "rsa"}
	var p string
	sawP := false
	for _, tag := range strings.Split(raw, ";") {
		name, v, ok := strings.Cut(strings.TrimSpace(tag), "=")
		if !ok {
			continue
		}
		v = strings.Join(strings.Fields(v), "")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "k":
			k.Type = strings.ToLower(v)
		case "p":
			p, sawP = v, true
		}
	}
	switch {
	case !sawP:
		k.Problem = "syntax"
	case p == "":
		k.Revoked, k.Problem = true, "revoked"
	default:
		der, err := base64.StdEncoding.DecodeString(p)
		if err != nil {
			k.Problem = "syntax"
			break
		}
		switch k.Type {
		case "ed25519":
			k.Bits = 8 * len(der)
		default:
			if pub, err := x509.ParsePKIXPublicKey(der); err == nil {
				if bl, ok := pub.(interface{ Size() int }); ok {
					k.Bits = 8 * bl.Size()
				}
			} else if rsaKey, err := x509.ParsePKCS1PublicKey(der); err == nil {
				k.Bits = rsaKey.N.BitLen() // some publish the PKCS#1 form
			} else {
				k.Problem = "syntax"
				break
			}
			if k.Bits > 0 && k.Bits < 1024 {
				k.Problem = "weak_key" // RFC 8301: at least 1024 bits
			}
		}
	}
	return k
}

// missingMeans says what the absence of an optional record costs.
var missingMeans = map[string]string{
	KindMTASTS: "no MTA-STS record: senders cannot be told to require TLS",
	KindTLSRPT: "no TLS-RPT record: no SMTP TLS reports are sent",
	KindBIMI:   "no BIMI record: no brand logo in supporting mailboxes",
}

// Finding states an observation for a person (`dmarc-exporter check`).
func (o *Observation) Finding() Finding {
	f := Finding{Domain: o.Domain, Record: o.Kind}
	name := o.Name()
	switch {
	case o.Err != nil:
		f.Severity, f.Code, f.Message = SeverityError, "lookup_error", fmt.Sprintf("%s lookup failed: %v", name, o.Err)
	case len(o.Texts) == 0 && o.Problem == "":
		f.Severity, f.Code, f.Message = SeverityWarning, "missing", missingMeans[o.Kind]
	case !o.Valid:
		f.Severity, f.Code, f.Message = SeverityError, o.Problem, fmt.Sprintf("%s: %s", name, o.Problem)
		if o.DKIM != nil && o.DKIM.Revoked {
			f.Message = fmt.Sprintf("%s: the key is revoked (empty p=)", name)
		}
		if o.Problem == "missing" {
			f.Message = fmt.Sprintf("no %s record", name)
		}
	default:
		f.Severity, f.Code, f.Message = SeverityOK, "ok", o.Texts[0]
		if o.DKIM != nil {
			f.Message = fmt.Sprintf("%s: %s key of %d bits", name, o.DKIM.Type, o.DKIM.Bits)
		}
	}
	return f
}
