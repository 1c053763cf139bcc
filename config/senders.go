package config

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Senders configures how the sources of reported mail are identified and
// classified (package enrich).
type Senders struct {
	// ASNDatabase and CountryDatabase are MaxMind-format files (GeoLite2,
	// DB-IP Lite, IPinfo Lite); one IPinfo Lite file can be both.
	ASNDatabase     string `yaml:"asn_database"`
	CountryDatabase string `yaml:"country_database"`
	// ReverseDNS turns forward-confirmed reverse DNS names on (default)
	// or off.
	ReverseDNS *bool `yaml:"reverse_dns"`
	// LookupTimeout bounds each name lookup.
	LookupTimeout Duration `yaml:"lookup_timeout"`
	// KnownSendersFile adds senders to the built-in list (same shape as
	// enrich/senders.yml); its entries take precedence.
	KnownSendersFile string `yaml:"known_senders_file"`
	// Trusted lists, per domain, the sources its owner trusts.
	Trusted map[string]Trusted `yaml:"trusted"`
}

// Trusted is what a domain's owner trusts.
type Trusted struct {
	// Networks are CIDRs (or single addresses) of the domain's own
	// infrastructure: mail from them is authorized.
	Networks []string `yaml:"networks"`
	// Prefixes are Networks, parsed by Complete.
	Prefixes []netip.Prefix `yaml:"-"`
	// Services are names of known senders the domain uses.
	Services []string `yaml:"services"`
	// SPF trusts the networks the domain's own SPF record authorises.
	SPF bool `yaml:"spf"`
}

// DefaultLookupTimeout bounds each reverse DNS lookup.
const DefaultLookupTimeout = Duration(2 * time.Second)

func (s *Senders) setDefaults() {
	if s.ReverseDNS == nil {
		on := true
		s.ReverseDNS = &on
	}
	if s.LookupTimeout == 0 {
		s.LookupTimeout = DefaultLookupTimeout
	}
}

func (s *Senders) validate(domains []string) error {
	if time.Duration(s.LookupTimeout) < 10*time.Millisecond || time.Duration(s.LookupTimeout) > time.Minute {
		return fmt.Errorf("senders.lookup_timeout must be between 10ms and 1m")
	}
	trusted := map[string]Trusted{}
	for d, t := range s.Trusted {
		n := NormalizeDomain(d)
		if !validDomain(n) {
			return fmt.Errorf("senders.trusted: %q is not a domain name", d)
		}
		if len(domains) > 0 && !slices.Contains(domains, n) {
			return fmt.Errorf("senders.trusted: %q is not one of the domains", d)
		}
		t.Prefixes = nil
		for _, network := range t.Networks {
			p, err := ParseNetwork(network)
			if err != nil {
				return fmt.Errorf("senders.trusted: %s: %w", d, err)
			}
			t.Prefixes = append(t.Prefixes, p)
		}
		trusted[n] = t
	}
	s.Trusted = trusted
	return nil
}

// ParseNetwork reads a CIDR or a single address.
func ParseNetwork(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("%q is not a network (192.0.2.0/24, 2001:db8::/32) or an address", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
