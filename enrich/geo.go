package enrich

import (
	"fmt"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/oschwald/maxminddb-golang/v2"
)

// statEvery is how often a database file is checked for a new version.
const statEvery = 30 * time.Second

// DB is a MaxMind-format database (GeoLite2, DB-IP Lite, IPinfo Lite) read
// offline. It is read into memory, not mapped: a download that rewrites
// the file in place must not pull pages from under a lookup. It is read
// again when its file changes, so that a weekly download takes effect
// without a restart; the old copy stays with the lookups still using it
// and is freed with them.
type DB struct {
	path string
	now  func() time.Time

	mu      sync.RWMutex
	r       *maxminddb.Reader
	mtime   time.Time
	size    int64
	checked time.Time
}

// OpenDB opens a database file.
func OpenDB(path string) (*DB, error) {
	d := &DB{path: path, now: time.Now}
	if err := d.open(); err != nil {
		return nil, err
	}
	return d, nil
}

func (d *DB) open() error {
	fi, err := os.Stat(d.path)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(d.path)
	if err != nil {
		return err
	}
	r, err := maxminddb.OpenBytes(data)
	if err != nil {
		return fmt.Errorf("open %s: %w", d.path, err)
	}
	d.r, d.mtime, d.size, d.checked = r, fi.ModTime(), fi.Size(), d.now()
	return nil
}

// reader returns the current reader, reopening the file when it changed
// (checked at most every statEvery). A new file that fails to open keeps
// the old one in use.
func (d *DB) reader() *maxminddb.Reader {
	d.mu.RLock()
	r, due := d.r, d.now().Sub(d.checked) > statEvery
	d.mu.RUnlock()
	if !due {
		return r
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.now().Sub(d.checked) <= statEvery {
		return d.r
	}
	d.checked = d.now()
	if fi, err := os.Stat(d.path); err == nil && (!fi.ModTime().Equal(d.mtime) || fi.Size() != d.size) {
		_ = d.open() // a file that fails to open leaves the old copy in use
	}
	return d.r
}

// BuildTime is when the database in use was built.
func (d *DB) BuildTime() time.Time {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.r.Metadata.BuildTime()
}

// ASN returns the AS number and organisation of ip (0 when not found).
// GeoLite2 and DB-IP store autonomous_system_number; IPinfo Lite stores
// asn as "AS15169" and as_name.
func (d *DB) ASN(ip netip.Addr) (uint, string) {
	res := d.reader().Lookup(ip)
	if !res.Found() {
		return 0, ""
	}
	var rec struct {
		Number uint   `maxminddb:"autonomous_system_number"`
		Org    string `maxminddb:"autonomous_system_organization"`
	}
	if res.Decode(&rec) == nil && rec.Number != 0 {
		return rec.Number, rec.Org
	}
	var ipinfo struct {
		ASN  string `maxminddb:"asn"`
		Name string `maxminddb:"as_name"`
	}
	if res.Decode(&ipinfo) == nil {
		var n uint
		if _, err := fmt.Sscanf(ipinfo.ASN, "AS%d", &n); err == nil {
			return n, ipinfo.Name
		}
	}
	return 0, ""
}

// Country returns the ISO 3166 code of the country of ip ("" when not
// found): country.iso_code (GeoLite2, DB-IP) or country_code (IPinfo).
func (d *DB) Country(ip netip.Addr) string {
	res := d.reader().Lookup(ip)
	if !res.Found() {
		return ""
	}
	var code string
	if res.DecodePath(&code, "country", "iso_code") == nil && code != "" {
		return code
	}
	if res.DecodePath(&code, "country_code") == nil {
		return code
	}
	return ""
}
