package dnsmon

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/miekg/dns"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
)

// SPF evaluation for validity, not for a message: how many DNS lookups
// the record costs a receiver, against the limits of RFC 7208 §4.6.4 (10
// terms that query DNS, 2 void lookups), and what breaks it.

// SPF limits of RFC 7208 §4.6.4.
const (
	maxSPFLookups     = 10
	maxSPFVoidLookups = 2
	maxMXNames        = 10
)

// SPFResult is what evaluating a domain's SPF record found.
type SPFResult struct {
	Record      string
	Lookups     int // terms that query DNS, includes and redirects followed
	VoidLookups int
	// Problem is "" for a valid record, else one of the fixed codes:
	// missing, multiple_records, syntax, too_many_lookups,
	// too_many_void_lookups, include_loop, include_missing, lookup_error.
	Problem string
	Detail  string
}

// errSPF stops an evaluation with a problem code.
type errSPF struct{ code, detail string }

func (e *errSPF) Error() string { return e.code + ": " + e.detail }

// CheckSPF fetches and evaluates the SPF record of domain.
func CheckSPF(ctx context.Context, r *dnsclient.Resolver, domain string) (*SPFResult, []Finding) {
	e := &spfEval{ctx: ctx, r: r, res: &SPFResult{}}
	record, err := e.record(domain)
	return judgeSPF(e, domain, record, err)
}

// evalSPF evaluates an SPF record already fetched for domain.
func evalSPF(ctx context.Context, r *dnsclient.Resolver, domain, record string) *SPFResult {
	res, _ := judgeSPF(&spfEval{ctx: ctx, r: r, res: &SPFResult{}}, domain, record, nil)
	return res
}

// judgeSPF evaluates record (unless fetching it failed with err) and
// states the result.
func judgeSPF(e *spfEval, domain, record string, err error) (*SPFResult, []Finding) {
	res := e.res
	res.Record = record
	if err == nil {
		err = e.eval(domain, record, nil)
	}
	if err == nil && res.Lookups > maxSPFLookups {
		err = &errSPF{"too_many_lookups", fmt.Sprintf("%d DNS lookups, more than %d: receivers return permerror", res.Lookups, maxSPFLookups)}
	}
	f := Finding{Domain: domain, Record: "spf", Severity: SeverityOK, Code: "ok",
		Message: fmt.Sprintf("%d DNS lookups, %d void", res.Lookups, res.VoidLookups)}
	var se *errSPF
	if errors.As(err, &se) {
		res.Problem, res.Detail = se.code, se.detail
		f.Severity, f.Code, f.Message = SeverityError, se.code, se.detail
		if se.code == "missing" {
			f.Severity = SeverityWarning
		}
	}
	return res, []Finding{f}
}

type spfEval struct {
	ctx context.Context
	r   *dnsclient.Resolver
	res *SPFResult
	// nets, when not nil, collects the networks the record authorises
	// (SPFNetworks); denied collects those of earlier terms that do not
	// pass, which win over later ones (first match).
	nets, denied *[]netip.Prefix
}

// SPFNetworks returns the networks that domain's SPF record authorises:
// the ip4, ip6, a and mx terms that pass (no "-", "~" or "?"), through
// passing includes and a redirect, within the RFC 7208 lookup limits.
// SPF takes the first term that matches, so a network that overlaps one
// of an earlier term that does not pass is left out. Terms that depend on
// the message (exists, ptr, macros) authorise nothing here. On an error,
// the networks found so far come with it.
func SPFNetworks(ctx context.Context, r *dnsclient.Resolver, domain string) ([]netip.Prefix, error) {
	nets, denied := []netip.Prefix{}, []netip.Prefix{}
	e := &spfEval{ctx: ctx, r: r, res: &SPFResult{}, nets: &nets, denied: &denied}
	record, err := e.record(domain)
	if err == nil {
		err = e.eval(domain, record, nil)
	}
	return nets, err
}

// collect adds the networks of an ip4, ip6, a or mx term to nets when it
// passes, else to denied; spec is the term after its name
// ("192.0.2.0/24", ":example.com/24//64", "/24").
func (e *spfEval) collect(mech, target, spec string, pass bool) error {
	v4, v6 := 32, 128
	if i := strings.IndexByte(spec, '/'); i >= 0 {
		c4, c6, dual := strings.Cut(spec[i+1:], "//")
		if strings.HasPrefix(spec[i:], "//") {
			c4, c6, dual = "", spec[i+2:], true
		}
		if c4 != "" {
			n, err := strconv.Atoi(c4)
			if err != nil || n < 0 || n > 32 {
				return &errSPF{"syntax", fmt.Sprintf("bad prefix length in %q", spec)}
			}
			v4 = n
		}
		if dual && c6 != "" {
			n, err := strconv.Atoi(c6)
			if err != nil || n < 0 || n > 128 {
				return &errSPF{"syntax", fmt.Sprintf("bad prefix length in %q", spec)}
			}
			v6 = n
		}
	}
	addPrefix := func(p netip.Prefix) {
		if !pass {
			*e.denied = append(*e.denied, p)
			return
		}
		for _, d := range *e.denied {
			if d.Overlaps(p) {
				return // an earlier term decides for these addresses
			}
		}
		*e.nets = append(*e.nets, p)
	}
	add := func(a netip.Addr) {
		bits := v6
		if a.Is4() {
			bits = v4
		}
		if p, err := a.Prefix(bits); err == nil {
			addPrefix(p)
		}
	}
	switch mech {
	case "ip4", "ip6":
		arg := strings.TrimPrefix(spec, ":")
		p, err := netip.ParsePrefix(arg)
		if err != nil {
			a, aerr := netip.ParseAddr(arg)
			if aerr != nil {
				return &errSPF{"syntax", fmt.Sprintf("%s:%s is not an address", mech, truncate(arg, 40))}
			}
			p = netip.PrefixFrom(a, a.BitLen())
		}
		if p.Addr().Is4() != (mech == "ip4") {
			return &errSPF{"syntax", fmt.Sprintf("%s:%s is of the other address family", mech, truncate(arg, 40))}
		}
		addPrefix(p.Masked())
		return nil
	case "mx":
		hosts, err := e.r.MX(e.ctx, target)
		if err != nil {
			return &errSPF{"lookup_error", fmt.Sprintf("MX lookup of %s failed: %v", target, err)}
		}
		for _, h := range hosts[:min(len(hosts), maxMXNames)] {
			if err := e.addrs(h, add); err != nil {
				return err
			}
		}
		return nil
	}
	return e.addrs(target, add)
}

// addrs looks up the A and AAAA records of name.
func (e *spfEval) addrs(name string, add func(netip.Addr)) error {
	for _, t := range []uint16{dns.TypeA, dns.TypeAAAA} {
		as, _, err := e.r.Addrs(e.ctx, name, t)
		if err != nil {
			return &errSPF{"lookup_error", fmt.Sprintf("address lookup of %s failed: %v", name, err)}
		}
		for _, a := range as {
			add(a)
		}
	}
	return nil
}

// record returns the one SPF record of domain.
func (e *spfEval) record(domain string) (string, error) {
	txts, err := e.r.TXT(e.ctx, domain)
	if err != nil {
		return "", &errSPF{"lookup_error", fmt.Sprintf("TXT lookup of %s failed: %v", domain, err)}
	}
	var found []string
	for _, t := range txts {
		if isSPFRecord(t) {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return "", &errSPF{"missing", fmt.Sprintf("no SPF record at %s", domain)}
	case 1:
		return found[0], nil
	}
	return "", &errSPF{"multiple_records", fmt.Sprintf("%d SPF records at %s: receivers return permerror", len(found), domain)}
}

// isSPFRecord: "v=spf1" alone or followed by a space, in any case (RFC
// 7208 §4.5).
func isSPFRecord(t string) bool {
	l := strings.ToLower(strings.TrimSpace(t))
	return l == "v=spf1" || strings.HasPrefix(l, "v=spf1 ")
}

// lookup counts one DNS-querying term and fails past the limit.
func (e *spfEval) lookup() error {
	e.res.Lookups++
	if e.res.Lookups > maxSPFLookups {
		return &errSPF{"too_many_lookups", fmt.Sprintf("more than %d DNS lookups: receivers return permerror", maxSPFLookups)}
	}
	return nil
}

// void counts a lookup that found nothing and fails past the limit.
func (e *spfEval) void(name string) error {
	e.res.VoidLookups++
	if e.res.VoidLookups > maxSPFVoidLookups {
		return &errSPF{"too_many_void_lookups", fmt.Sprintf("more than %d lookups found nothing (the last: %s): receivers return permerror", maxSPFVoidLookups, name)}
	}
	return nil
}

// eval walks the terms of record, following includes and a redirect;
// stack holds the domains being evaluated, to find loops.
func (e *spfEval) eval(domain, record string, stack []string) error {
	for _, d := range stack {
		if d == domain {
			return &errSPF{"include_loop", fmt.Sprintf("%s includes itself: %s", domain, strings.Join(append(stack, domain), " > "))}
		}
	}
	stack = append(stack, domain)
	var redirect string
	sawRedirect, sawAll := false, false
	for _, term := range strings.Fields(record)[1:] {
		lt := strings.ToLower(term)
		if k, v, ok := strings.Cut(lt, "="); ok && !strings.ContainsAny(k, ":/") {
			switch k {
			case "redirect":
				if sawRedirect {
					return &errSPF{"syntax", fmt.Sprintf("%s: two redirect= modifiers", domain)}
				}
				sawRedirect, redirect = true, v
			case "exp":
			default: // unknown modifiers are ignored (RFC 7208 §6)
			}
			continue
		}
		mech := strings.TrimLeft(lt, "+-~?")
		pass := len(mech) == len(lt) || lt[0] == '+'
		name, arg, _ := strings.Cut(mech, ":")
		if i := strings.IndexByte(name, '/'); i >= 0 {
			name = name[:i]
		}
		spec := mech[len(name):]
		if i := strings.IndexByte(arg, '/'); i >= 0 {
			arg = arg[:i]
		}
		target := arg
		if target == "" {
			target = domain
		}
		macro := strings.Contains(target, "%")
		if sawAll {
			continue // RFC 7208 §5.1: terms after "all" are never reached
		}
		switch name {
		case "all":
			sawAll = true
		case "ip4", "ip6":
			if e.nets != nil {
				if err := e.collect(name, "", spec, pass); err != nil {
					return err
				}
			}
		case "include":
			if arg == "" {
				return &errSPF{"syntax", fmt.Sprintf("%s: include without a domain", domain)}
			}
			// An include that does not pass authorises nothing: its
			// record is still evaluated, for the limits.
			nets := e.nets
			if !pass {
				e.nets = nil
			}
			err := e.follow(domain, target, "includes", stack)
			e.nets = nets
			if err != nil {
				return err
			}
		case "a", "mx", "exists", "ptr":
			if err := e.lookup(); err != nil {
				return err
			}
			if macro || name == "ptr" {
				continue
			}
			if err := e.resolves(name, target); err != nil {
				return err
			}
			if e.nets != nil && (name == "a" || name == "mx") {
				if err := e.collect(name, target, strings.TrimPrefix(spec, ":"+arg), pass); err != nil {
					return err
				}
			}
		default:
			return &errSPF{"syntax", fmt.Sprintf("%s: unknown term %q", domain, truncate(term, 40))}
		}
	}
	// RFC 7208 §6.1: a redirect is ignored when the record has "all".
	if redirect != "" && !sawAll {
		return e.follow(domain, redirect, "redirects to", stack)
	}
	return nil
}

// follow counts the lookup of an include or redirect and evaluates the
// target's record; a target with a macro depends on the message and is not
// followed, one without an SPF record is a permerror.
func (e *spfEval) follow(domain, target, verb string, stack []string) error {
	if err := e.lookup(); err != nil {
		return err
	}
	if strings.Contains(target, "%") {
		return nil
	}
	next, err := e.record(target)
	var se *errSPF
	if errors.As(err, &se) && se.code == "missing" {
		if err := e.void(target); err != nil {
			return err
		}
		return &errSPF{"include_missing", fmt.Sprintf("%s %s %s, which has no SPF record: receivers return permerror", domain, verb, target)}
	}
	if err != nil {
		return err
	}
	return e.eval(target, next, stack)
}

// resolves looks up the names an a, mx or exists term needs, counting
// void lookups.
func (e *spfEval) resolves(mech, target string) error {
	switch mech {
	case "mx":
		hosts, err := e.r.MX(e.ctx, target)
		if err != nil {
			return &errSPF{"lookup_error", fmt.Sprintf("MX lookup of %s failed: %v", target, err)}
		}
		if len(hosts) == 0 {
			return e.void(target)
		}
		if len(hosts) > maxMXNames {
			return &errSPF{"too_many_lookups", fmt.Sprintf("%s has %d MX names, more than %d: receivers return permerror", target, len(hosts), maxMXNames)}
		}
		return nil
	default: // a, exists
		a, err := e.r.Exists(e.ctx, target, dns.TypeA)
		if err != nil {
			return &errSPF{"lookup_error", fmt.Sprintf("A lookup of %s failed: %v", target, err)}
		}
		aaaa := false
		if !a && mech == "a" {
			if aaaa, err = e.r.Exists(e.ctx, target, dns.TypeAAAA); err != nil {
				return &errSPF{"lookup_error", fmt.Sprintf("AAAA lookup of %s failed: %v", target, err)}
			}
		}
		if !a && !aaaa {
			return e.void(target)
		}
		return nil
	}
}
