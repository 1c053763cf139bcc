package dnsmon

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

func codes(fs []Finding) string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Severity)+":"+f.Code)
	}
	return strings.Join(out, ",")
}

func TestCheckDMARC(t *testing.T) {
	r := testResolver(t)
	for _, tt := range []struct {
		domain, want string
	}{
		{"good.example.test", "ok:ok"},
		{"nodmarc.example.test", "error:missing"},
		{"sub.good.example.test", "ok:inherited"},
		{"deep.a.b.c.d.e.f.g.good.example.test", "ok:inherited"},
		{"sub.spdomain.example.test", "warning:inherited"},
		{"twodmarc.example.test", "error:multiple_records"},
		{"badtag.example.test", "error:syntax,error:syntax,error:no_policy"},
		{"nop.example.test", "error:no_policy"},
		{"nopua.example.test", "warning:no_policy"},
		{"shop.example.test", "ok:ok"},          // rua in a sibling subdomain: same organization
		{"a.shop2.psdtld", "ok:inherited"},      // the walk reaches the top-level domain
		{"lower.example.test", "error:missing"}, // v=dmarc1: not a DMARC record
		{"extrua.example.test", "warning:policy_none,error:unauthorized_destination"},
		{"extruaok.example.test", "warning:testing"},
		{"x.servfail.test", "error:lookup_error"},
	} {
		_, fs := CheckDMARC(context.Background(), r, tt.domain)
		if got := codes(fs); got != tt.want {
			t.Errorf("%s: %s, want %s (%+v)", tt.domain, got, tt.want, fs)
		}
	}
}

func TestCheckSPF(t *testing.T) {
	r := testResolver(t)
	for _, tt := range []struct {
		domain        string
		problem       string
		lookups, void int
	}{
		{"good.example.test", "", 2, 0},
		{"ten.example.test", "", 10, 0},
		{"redir.example.test", "", 1, 0},
		{"toomany.example.test", "too_many_lookups", 11, 0},
		{"void.example.test", "too_many_void_lookups", 3, 3},
		{"twospf.example.test", "multiple_records", 0, 0},
		{"loop.example.test", "include_loop", 2, 0},
		{"incmissing.example.test", "include_missing", 1, 1},
		{"badsyntax.example.test", "syntax", 0, 0},
		{"nodmarc-nospf.example.test", "missing", 0, 0},
		{"x.servfail.test", "lookup_error", 0, 0},
		{"redirall.example.test", "", 10, 0},                // redirect ignored beside "all"
		{"afterall.example.test", "", 1, 0},                 // terms after "all" never reached
		{"redirmiss.example.test", "include_missing", 1, 1}, // redirect to a domain without SPF
		{"inclerr.example.test", "lookup_error", 1, 0},
	} {
		res, fs := CheckSPF(context.Background(), r, tt.domain)
		if res.Problem != tt.problem || res.Lookups != tt.lookups || res.VoidLookups != tt.void {
			t.Errorf("%s: problem %q, %d lookups, %d void; want %q, %d, %d (%s)",
				tt.domain, res.Problem, res.Lookups, res.VoidLookups, tt.problem, tt.lookups, tt.void, res.Detail)
		}
		if len(fs) != 1 || (tt.problem == "") != (fs[0].Severity == SeverityOK) {
			t.Errorf("%s: findings %+v", tt.domain, fs)
		}
	}
}

func TestObserve(t *testing.T) {
	r := testResolver(t)
	for _, tt := range []struct {
		kind, selector string
		present, valid bool
		problem        string
		bits           int
	}{
		{KindDKIM, "s2048", true, true, "", 2048},
		{KindDKIM, "old", true, false, "revoked", 0},
		{KindDKIM, "bad", true, false, "syntax", 0},
		{KindDKIM, "nosuch", false, false, "missing", 0},
		{KindMTASTS, "", true, true, "", 0},
		{KindTLSRPT, "", true, true, "", 0},
		{KindBIMI, "", false, false, "", 0},
		{KindDMARC, "", true, true, "", 0},
		{KindSPF, "", true, true, "", 0},
	} {
		o := Observe(context.Background(), r, "good.example.test", tt.kind, tt.selector)
		bits := 0
		if o.DKIM != nil {
			bits = o.DKIM.Bits
		}
		if o.Err != nil || (len(o.Texts) > 0) != tt.present || o.Valid != tt.valid || o.Problem != tt.problem || bits != tt.bits {
			t.Errorf("%s %s: present %v valid %v problem %q bits %d err %v; want %v %v %q %d",
				tt.kind, tt.selector, len(o.Texts) > 0, o.Valid, o.Problem, bits, o.Err, tt.present, tt.valid, tt.problem, tt.bits)
		}
	}
	o := Observe(context.Background(), r, "x.servfail.test", KindDMARC, "")
	if o.Err == nil || o.Rcode != "servfail" {
		t.Errorf("SERVFAIL: err %v rcode %q", o.Err, o.Rcode)
	}
}

// TestTreeWalkFailure: a SERVFAIL on the way up is a failed lookup, not a
// missing record, for check and for the monitor.
func TestTreeWalkFailure(t *testing.T) {
	srv := testenv.StartDNS(t, "../testdata/dns/zones.txt")
	r := &dnsclient.Resolver{Servers: []string{srv.Addr}, Timeout: 2 * time.Second}
	srv.Fail("_dmarc.good.example.test", true)
	if _, fs := CheckDMARC(context.Background(), r, "sub.good.example.test"); codes(fs) != "error:lookup_error" {
		t.Errorf("check: %s", codes(fs))
	}
	if o := Observe(context.Background(), r, "sub.good.example.test", KindDMARC, ""); o.Err == nil || o.Problem != "" {
		t.Errorf("monitor: err %v, problem %q", o.Err, o.Problem)
	}
}

// TestSPFNetworks: the networks a record authorises, through an include,
// a and mx terms with their prefix lengths; softfail terms authorise
// nothing.
func TestSPFNetworks(t *testing.T) {
	r := testResolver(t)
	for _, tt := range []struct {
		domain string
		want   string
	}{
		{"good.example.test", "[192.0.2.0/24 2001:db8::/32 192.0.2.25/32]"},
		{"nets.example.test", "[203.0.113.64/28 2001:db8:2::/120 2001:db8:1::1/128 192.0.2.0/24 2001:db8::/32]"},
		{"nodmarc.example.test", "[]"},
		{"firstmatch.example.test", "[198.51.101.0/24]"},
	} {
		nets, err := SPFNetworks(context.Background(), r, tt.domain)
		if err != nil {
			t.Errorf("%s: %v", tt.domain, err)
		}
		if got := fmt.Sprint(nets); got != tt.want {
			t.Errorf("%s: %s, want %s", tt.domain, got, tt.want)
		}
	}
	if _, err := SPFNetworks(context.Background(), r, "toomany.example.test"); err == nil || !strings.Contains(err.Error(), "too_many_lookups") {
		t.Errorf("toomany: %v", err)
	}
}
