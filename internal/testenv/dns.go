package testenv

import (
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// DNSServer is an authoritative server on 127.0.0.1 (miekg/dns's own)
// that answers from a zone file, NXDOMAIN for names it does not hold, and
// SERVFAIL for names under servfail.test. Records can be replaced while it
// runs, as a zone reload would.
type DNSServer struct {
	mu      sync.Mutex
	records map[string][]dns.RR // by lower-cased owner name
	failing map[string]bool     // names answered with SERVFAIL
	srv     *dns.Server
	Addr    string
}

// StartDNS starts a server answering from zoneFile, stopped when the test
// ends.
func StartDNS(t testing.TB, zoneFile string) *DNSServer {
	t.Helper()
	s := &DNSServer{records: map[string][]dns.RR{}, failing: map[string]bool{}}
	f, err := os.Open(zoneFile)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, "", zoneFile)
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		s.add(rr)
	}
	if err := zp.Err(); err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.Addr = pc.LocalAddr().String()
	started := make(chan struct{})
	s.srv = &dns.Server{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { close(started) }}
	go s.srv.ActivateAndServe()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("DNS server did not start")
	}
	t.Cleanup(func() { s.srv.Shutdown() })
	return s
}

func (s *DNSServer) add(rr dns.RR) {
	name := strings.ToLower(rr.Header().Name)
	s.records[name] = append(s.records[name], rr)
}

// Set replaces the records of name (a zone change).
func (s *DNSServer) Set(t testing.TB, name string, rrs ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.records, strings.ToLower(dns.Fqdn(name)))
	for _, text := range rrs {
		rr, err := dns.NewRR(text)
		if err != nil {
			t.Fatal(err)
		}
		s.add(rr)
	}
}

// Fail makes the server answer SERVFAIL for name, or stop doing so.
func (s *DNSServer) Fail(name string, on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failing[strings.ToLower(dns.Fqdn(name))] = on
}

func (s *DNSServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	q := req.Question[0]
	name := strings.ToLower(q.Name)
	s.mu.Lock()
	rrs, ok := s.records[name]
	failing := s.failing[name]
	s.mu.Unlock()
	switch {
	case failing || strings.HasSuffix(name, "servfail.test."):
		m.Rcode = dns.RcodeServerFailure
	case !ok:
		m.Rcode = dns.RcodeNameError
	default:
		for _, rr := range rrs {
			if rr.Header().Rrtype == q.Qtype {
				m.Answer = append(m.Answer, rr)
			}
		}
	}
	w.WriteMsg(m)
}
