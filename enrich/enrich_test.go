package enrich

import (
	"context"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/maxmind/mmdbwriter/mmdbtype"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"golang.org/x/time/rate"

	"github.com/dmarc-exporter/dmarc-exporter/dnsclient"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// writeDB writes a test database of the corpus networks.
func writeDB(t testing.TB, dbType string, value func(testenv.Network) mmdbtype.Map) string {
	return testenv.WriteMMDB(t, dbType, testenv.CorpusNetworks, value)
}

func value(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

func openDB(t testing.TB, path string) *DB {
	t.Helper()
	db, err := OpenDB(path)
	if err != nil {
		t.Fatal(err)
	}
	return db
}

// TestDatabases: AS and country from GeoLite2-shaped and IPinfo-shaped
// databases; an address in none is unknown.
func TestDatabases(t *testing.T) {
	asn := openDB(t, writeDB(t, "GeoLite2-ASN", testenv.GeoLiteASN))
	country := openDB(t, writeDB(t, "GeoLite2-Country", testenv.GeoLiteCountry))
	ipinfo := openDB(t, writeDB(t, "ipinfo_lite", testenv.IPinfoLite))
	for _, tt := range []struct {
		ip      string
		asn     uint
		org     string
		country string
	}{
		{"209.85.220.69", 15169, "GOOGLE", "US"},
		{"136.143.188.8", 2639, "ZOHO-AS", "US"},
		{"130.149.246.218", 680, "Verein zur Foerderung eines Deutschen Forschungsnetzes e.V.", "DE"},
		{"2a00:1450:4864:20::541", 15169, "GOOGLE", "IE"},
		{"192.0.2.1", 0, "", ""},
	} {
		ip := netip.MustParseAddr(tt.ip)
		for name, db := range map[string][2]*DB{"geolite": {asn, country}, "ipinfo": {ipinfo, ipinfo}} {
			n, org := db[0].ASN(ip)
			if n != tt.asn || org != tt.org {
				t.Errorf("%s %s: AS %d %q, want %d %q", name, tt.ip, n, org, tt.asn, tt.org)
			}
			if c := db[1].Country(ip); c != tt.country {
				t.Errorf("%s %s: country %q, want %q", name, tt.ip, c, tt.country)
			}
		}
	}
	if got := asn.BuildTime().Unix(); got != 1700000000 {
		t.Errorf("build time %d", got)
	}
}

// TestDatabaseReload: a new file at the same path is used once noticed.
func TestDatabaseReload(t *testing.T) {
	path := writeDB(t, "GeoLite2-ASN", testenv.GeoLiteASN)
	db := openDB(t, path)
	now := time.Now()
	db.now = func() time.Time { return now }
	ip := netip.MustParseAddr("209.85.220.69")
	if n, _ := db.ASN(ip); n != 15169 {
		t.Fatalf("AS %d", n)
	}
	other := writeDB(t, "GeoLite2-ASN", func(testenv.Network) mmdbtype.Map {
		return mmdbtype.Map{"autonomous_system_number": mmdbtype.Uint32(64512), "autonomous_system_organization": mmdbtype.String("NEW")}
	})
	data, _ := os.ReadFile(other)
	tmp := path + ".tmp"
	os.WriteFile(tmp, data, 0o644)
	future := time.Now().Add(time.Minute)
	os.Chtimes(tmp, future, future)
	os.Rename(tmp, path) // as a download script replaces it
	if n, _ := db.ASN(ip); n != 15169 {
		t.Fatalf("AS %d before the next check", n)
	}
	now = now.Add(statEvery + time.Second)
	if n, org := db.ASN(ip); n != 64512 || org != "NEW" {
		t.Fatalf("AS %d %q after the file changed", n, org)
	}
}

func testNames(t testing.TB) (*Names, *testenv.DNSServer, *Metrics) {
	srv := testenv.StartDNS(t, "testdata/names.zone")
	m := NewMetrics(nil)
	r := &dnsclient.Resolver{Servers: []string{srv.Addr}, Timeout: time.Second}
	names := NewNames(r, time.Second, 4, 0, m)
	names.limiter = rate.NewLimiter(rate.Inf, 0) // the tests look up more than a real ingest would
	return names, srv, m
}

// TestNames: forward-confirmed names reduced to their registrable domain;
// a PTR name that does not lead back, SERVFAIL and a dead resolver give
// no name, are counted, and are cached for a while.
func TestNames(t *testing.T) {
	names, srv, m := testNames(t)
	ips := []netip.Addr{
		netip.MustParseAddr("209.85.220.69"),   // mail-sor-f69.google.com
		netip.MustParseAddr("136.143.188.8"),   // sender4-op-o8.zoho.com
		netip.MustParseAddr("130.149.246.218"), // PTR forged.example.net, whose A is elsewhere
		netip.MustParseAddr("198.51.100.7"),    // no PTR
	}
	got := names.Resolve(context.Background(), ips)
	if len(got) != 2 || got[ips[0]] != "google.com" || got[ips[1]] != "zoho.com" {
		t.Fatalf("names %v", got)
	}
	if hits, misses := value(m.cacheHits), value(m.cacheMisses); hits != 0 || misses != 4 {
		t.Errorf("hits %v misses %v", hits, misses)
	}
	names.Resolve(context.Background(), ips)
	if hits := value(m.cacheHits); hits != 4 {
		t.Errorf("second pass: %v cache hits, want 4", hits)
	}

	srv.Fail("8.188.143.136.in-addr.arpa", true)
	fresh := NewNames(&dnsclient.Resolver{Servers: []string{srv.Addr}, Timeout: time.Second}, time.Second, 4, 0, m)
	if got := fresh.Resolve(context.Background(), ips[1:2]); len(got) != 0 {
		t.Errorf("SERVFAIL gave %v", got)
	}
	if n := value(m.lookupErrors.WithLabelValues("servfail")); n != 1 {
		t.Errorf("servfail errors %v", n)
	}
}

// TestNamesDeadResolver: a resolver that never answers costs a few
// lookups their timeout; then lookups are paused and skipped.
func TestNamesDeadResolver(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0") // reads nothing, answers nothing
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	m := NewMetrics(nil)
	names := NewNames(&dnsclient.Resolver{Servers: []string{pc.LocalAddr().String()}, Timeout: time.Second}, 200*time.Millisecond, 2, 0, m)
	var ips []netip.Addr
	for i := range 40 {
		ips = append(ips, netip.AddrFrom4([4]byte{198, 51, 100, byte(i)}))
	}
	if got := names.Resolve(context.Background(), ips); len(got) != 0 {
		t.Fatalf("names %v", got)
	}
	// Lookups stop after breakerFailures timeouts (a few more were
	// already running): the rest are skipped without a query.
	timeouts, skipped := value(m.lookupErrors.WithLabelValues("timeout")), value(m.lookupErrors.WithLabelValues("skipped"))
	if timeouts+skipped != 40 || timeouts > breakerFailures+2 {
		t.Errorf("timeouts %v, skipped %v", timeouts, skipped)
	}
}

// TestNamesRationed: one call looks up at most MaxLookups uncached
// addresses; the rest get no name and are not cached. A caller whose time
// is up does not count against the resolver: no timeouts, no pause.
func TestNamesRationed(t *testing.T) {
	srv := testenv.StartDNS(t, "testdata/names.zone")
	m := NewMetrics(nil)
	names := NewNames(&dnsclient.Resolver{Servers: []string{srv.Addr}, Timeout: time.Second}, time.Second, 8, 0, m)
	var ips []netip.Addr
	for i := range 600 {
		ips = append(ips, netip.AddrFrom4([4]byte{198, 51, byte(100 + i/256), byte(i)}))
	}
	names.Resolve(context.Background(), ips)
	if looked, skipped := value(m.cacheMisses)-value(m.lookupErrors.WithLabelValues("skipped")), value(m.lookupErrors.WithLabelValues("skipped")); looked != MaxLookups || skipped != 600-MaxLookups {
		t.Errorf("%v looked up, %v skipped; want %d and %d", looked, skipped, MaxLookups, 600-MaxLookups)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fresh := NewNames(&dnsclient.Resolver{Servers: []string{srv.Addr}, Timeout: time.Second}, time.Second, 8, 0, m)
	fresh.Resolve(ctx, ips[:50])
	if n := value(m.lookupErrors.WithLabelValues("timeout")); n != 0 || fresh.paused() {
		t.Errorf("a cancelled caller counted %v timeouts, paused %v", n, fresh.paused())
	}
}
