package dnsmon

import (
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// testResolver resolves through an authoritative test server on 127.0.0.1
// loaded with testdata/dns/zones.txt.
func testResolver(t *testing.T) *dnsclient.Resolver {
	s := testenv.StartDNS(t, "../testdata/dns/zones.txt")
	return &dnsclient.Resolver{Servers: []string{s.Addr}, Timeout: 2 * time.Second}
}
