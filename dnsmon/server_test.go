package dnsmon

import (
	"testing"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// testResolver resolves through an authoritative test server on 127.0.0.1
// loaded with testdata/dns/zones.txt.
func testResolver(t *testing.T) *Resolver {
	s := testenv.StartDNS(t, "../testdata/dns/zones.txt")
	return &Resolver{Servers: []string{s.Addr}, Timeout: 2 * time.Second}
}
