// Package dnsclient is the DNS client of every lookup the exporter makes
// (the DNS monitor's, and the source names of enrichment): queries through
// github.com/miekg/dns to the configured recursive resolvers, in order, so
// that every lookup goes where the user says, with the TTL of each answer
// and failures kept apart by their rcode.
package dnsclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Resolver sends queries to a list of recursive resolvers, in order, until
// one answers.
type Resolver struct {
	Servers []string // host:port
	Timeout time.Duration
}

// SystemResolver reads the resolvers of /etc/resolv.conf.
func SystemResolver() (*Resolver, error) {
	cfg, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return nil, fmt.Errorf("system resolvers: %w", err)
	}
	r := &Resolver{Timeout: 5 * time.Second}
	for _, s := range cfg.Servers {
		r.Servers = append(r.Servers, net.JoinHostPort(s, cfg.Port))
	}
	return r, nil
}

// RcodeError is an answer with an rcode other than NOERROR and NXDOMAIN:
// a failure to learn the record, not its absence.
type RcodeError struct {
	Name  string
	Rcode int
}

func (e *RcodeError) Error() string {
	return fmt.Sprintf("%s: %s", e.Name, dns.RcodeToString[e.Rcode])
}

// ErrNoServer: no resolver answered.
var ErrNoServer = errors.New("no resolver answered")

// TXT returns the TXT records of name, each one's strings joined (RFC 7208
// §3.3). A name that does not exist, or has no TXT record, gives none.
func (r *Resolver) TXT(ctx context.Context, name string) ([]string, error) {
	out, _, err := r.TXTTTL(ctx, name)
	return out, err
}

// TXTTTL is TXT, with the smallest TTL of the records (0 for none).
func (r *Resolver) TXTTTL(ctx context.Context, name string) ([]string, uint32, error) {
	msg, err := r.query(ctx, name, dns.TypeTXT)
	if err != nil {
		return nil, 0, err
	}
	var out []string
	var ttl uint32
	for _, rr := range msg.Answer {
		if t, ok := rr.(*dns.TXT); ok {
			out = append(out, strings.Join(t.Txt, ""))
			if ttl == 0 || t.Hdr.Ttl < ttl {
				ttl = t.Hdr.Ttl
			}
		}
	}
	return out, ttl, nil
}

// Exists reports whether name has records of type qtype; it is what SPF's
// a, mx and exists mechanisms need to count void lookups.
func (r *Resolver) Exists(ctx context.Context, name string, qtype uint16) (bool, error) {
	msg, err := r.query(ctx, name, qtype)
	if err != nil {
		return false, err
	}
	for _, rr := range msg.Answer {
		if rr.Header().Rrtype == qtype {
			return true, nil
		}
	}
	return false, nil
}

// MX returns the exchange names of name.
func (r *Resolver) MX(ctx context.Context, name string) ([]string, error) {
	msg, err := r.query(ctx, name, dns.TypeMX)
	if err != nil {
		return nil, err
	}
	var out []string
	for _, rr := range msg.Answer {
		if mx, ok := rr.(*dns.MX); ok {
			out = append(out, strings.TrimSuffix(mx.Mx, "."))
		}
	}
	return out, nil
}

func (r *Resolver) query(ctx context.Context, name string, qtype uint16) (*dns.Msg, error) {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), qtype)
	m.RecursionDesired = true
	m.SetEdns0(1232, false)
	c := &dns.Client{Timeout: r.Timeout}
	var last error = ErrNoServer
	for _, s := range r.Servers {
		in, _, err := c.ExchangeContext(ctx, m, s)
		if err != nil {
			last = fmt.Errorf("%s: %w", s, err)
			continue
		}
		if in.Truncated {
			tc := &dns.Client{Net: "tcp", Timeout: r.Timeout}
			if in, _, err = tc.ExchangeContext(ctx, m, s); err != nil {
				last = fmt.Errorf("%s (tcp): %w", s, err)
				continue
			}
		}
		switch in.Rcode {
		case dns.RcodeSuccess, dns.RcodeNameError:
			return in, nil
		}
		last = &RcodeError{Name: name, Rcode: in.Rcode}
	}
	return nil, last
}

// PTR returns the names of the PTR records of ip, and their smallest TTL.
func (r *Resolver) PTR(ctx context.Context, ip netip.Addr) ([]string, uint32, error) {
	name, err := dns.ReverseAddr(ip.String())
	if err != nil {
		return nil, 0, err
	}
	msg, err := r.query(ctx, name, dns.TypePTR)
	if err != nil {
		return nil, 0, err
	}
	var out []string
	var ttl uint32
	for _, rr := range msg.Answer {
		if p, ok := rr.(*dns.PTR); ok {
			out = append(out, strings.ToLower(strings.TrimSuffix(p.Ptr, ".")))
			if ttl == 0 || p.Hdr.Ttl < ttl {
				ttl = p.Hdr.Ttl
			}
		}
	}
	return out, ttl, nil
}

// Addrs returns the addresses of name of one type (dns.TypeA or
// dns.TypeAAAA), and their smallest TTL.
func (r *Resolver) Addrs(ctx context.Context, name string, qtype uint16) ([]netip.Addr, uint32, error) {
	msg, err := r.query(ctx, name, qtype)
	if err != nil {
		return nil, 0, err
	}
	var out []netip.Addr
	var ttl uint32
	for _, rr := range msg.Answer {
		var ip net.IP
		switch a := rr.(type) {
		case *dns.A:
			ip = a.A
		case *dns.AAAA:
			ip = a.AAAA
		default:
			continue
		}
		if addr, ok := netip.AddrFromSlice(ip); ok {
			out = append(out, addr.Unmap())
			if ttl == 0 || rr.Header().Ttl < ttl {
				ttl = rr.Header().Ttl
			}
		}
	}
	return out, ttl, nil
}
