package main

import (
	"bytes"
	"compress/gzip"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// corpusDirs are the corpus directories of the explorer tests.
func corpusDirs() []string {
	var dirs []string
	for _, d := range []string{"aggregate", "email", "failure", "smtp_tls"} {
		dirs = append(dirs, filepath.Join(testdata, "corpus", d))
	}
	return dirs
}

// startCorpus starts the exporter on the corpus with failure samples
// kept, and waits until it has read it all; it returns the exporter and
// its storage directory.
func startCorpus(t *testing.T, args ...string) (*exporter, string) {
	t.Helper()
	dir := t.TempDir()
	// The default retention: the corpus's reports are years old, and
	// stay for archive.retention from when they were read.
	cfg := "failure_samples: 100\ndirectories:\n"
	for _, d := range corpusDirs() {
		cfg += fmt.Sprintf("  - path: %q\n", d)
	}
	cfgFile := filepath.Join(dir, "config.yml")
	if err := os.WriteFile(cfgFile, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	storage := filepath.Join(dir, "data")
	e := startExporter(t, append([]string{"--config.file=" + cfgFile, "--storage.path=" + storage, "--metrics.new-series-delay=0s"}, args...)...)
	e.waitScans(1, corpusDirs()...)
	return e, storage
}

// openArchiveDB opens the exporter's archive read-only, as a second
// process may while the exporter writes (WAL).
func openArchiveDB(t *testing.T, storage string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", "file:"+filepath.Join(storage, archive.FileName)+"?mode=ro&_pragma=busy_timeout(5000)")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// queryInts runs a query that answers one integer per row.
func queryInts(t *testing.T, db *sql.DB, q string, args ...any) []int64 {
	t.Helper()
	rows, err := db.Query(q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var v int64
		if err := rows.Scan(&v); err != nil {
			t.Fatal(err)
		}
		out = append(out, v)
	}
	return out
}

func getBody(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// failedReports are the reports with a counted record whose DMARC result
// is fail, read from the records themselves.
func failedReports(t *testing.T, db *sql.DB) []int64 {
	return queryInts(t, db, `SELECT DISTINCT report FROM aggregate_records
		WHERE dmarc <> 'pass' AND problem NOT LIKE 'count%' ORDER BY report`)
}

// TestExplorerAPI checks the API against the archive: the status filter,
// a report with every record and result, the original XML, paging.
func TestExplorerAPI(t *testing.T) {
	e, storage := startCorpus(t)
	db := openArchiveDB(t, storage)

	want := failedReports(t, db)
	if len(want) == 0 {
		t.Fatal("the corpus has no report with a failed record: the test checks nothing")
	}
	var list struct {
		Total int `json:"total"`
		Items []struct {
			ID     int64  `json:"id"`
			Status string `json:"status"`
		} `json:"items"`
	}
	getJSON(t, e.url+"/api/v1/reports?status=failed&per_page=500", &list)
	var got []int64
	for _, it := range list.Items {
		got = append(got, it.ID)
		if it.Status != "failed" {
			t.Errorf("report %d listed as %s under status=failed", it.ID, it.Status)
		}
	}
	slices.Sort(got)
	if !slices.Equal(got, want) || list.Total != len(want) {
		t.Errorf("status=failed lists %v (total %d), want %v", got, list.Total, want)
	}

	// Paging: two pages of 5 are the first 10 of one page of 10.
	var p1, p2, both struct {
		Items []struct {
			ID int64 `json:"id"`
		} `json:"items"`
	}
	getJSON(t, e.url+"/api/v1/reports?sort=messages&per_page=5", &p1)
	getJSON(t, e.url+"/api/v1/reports?sort=messages&per_page=5&page=2", &p2)
	getJSON(t, e.url+"/api/v1/reports?sort=messages&per_page=10", &both)
	if len(both.Items) != 10 || fmt.Sprint(append(p1.Items, p2.Items...)) != fmt.Sprint(both.Items) {
		t.Errorf("pages 1 and 2 of 5 %v %v, one page of 10 %v", p1.Items, p2.Items, both.Items)
	}

	// The report with the most DKIM and SPF results: every one is there.
	id := queryInts(t, db, `SELECT report FROM (SELECT report, count(*) n FROM record_dkim GROUP BY report
		UNION ALL SELECT report, count(*) FROM record_spf GROUP BY report) GROUP BY report ORDER BY sum(n) DESC, report LIMIT 1`)[0]
	var detail struct {
		ReportID string `json:"report_id"`
		Records  []struct {
			DKIM        []json.RawMessage `json:"dkim_results"`
			SPF         []json.RawMessage `json:"spf_results"`
			Explanation string            `json:"explanation"`
		} `json:"records_detail"`
	}
	getJSON(t, fmt.Sprintf("%s/api/v1/reports/%d", e.url, id), &detail)
	records := queryInts(t, db, "SELECT count(*) FROM aggregate_records WHERE report = ?", id)[0]
	dkim := queryInts(t, db, "SELECT count(*) FROM record_dkim WHERE report = ?", id)[0]
	spf := queryInts(t, db, "SELECT count(*) FROM record_spf WHERE report = ?", id)[0]
	var gotDKIM, gotSPF int64
	for _, r := range detail.Records {
		gotDKIM += int64(len(r.DKIM))
		gotSPF += int64(len(r.SPF))
		if r.Explanation == "" {
			t.Errorf("report %d: a record without an explanation", id)
		}
	}
	if int64(len(detail.Records)) != records || gotDKIM != dkim || gotSPF != spf {
		t.Errorf("report %d: %d records, %d DKIM, %d SPF results; the archive has %d, %d, %d",
			id, len(detail.Records), gotDKIM, gotSPF, records, dkim, spf)
	}

	// The XML is the report as received, byte for byte.
	var raw []byte
	if err := db.QueryRow("SELECT raw FROM aggregate_reports WHERE id = ?", id).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	original, _ := io.ReadAll(zr)
	if code, body := getBody(t, fmt.Sprintf("%s/api/v1/reports/%d/xml", e.url, id)); code != 200 || body != string(original) {
		t.Errorf("report %d: /xml answered %d, %d bytes; the original has %d", id, code, len(body), len(original))
	}
	if _, body := getBody(t, fmt.Sprintf("%s/api/v1/reports/%d/xml?pretty=1", e.url, id)); !strings.Contains(body, "<report_id>"+detail.ReportID+"</report_id>") {
		t.Errorf("report %d: the pretty XML lacks its report_id %q:\n%.500s", id, detail.ReportID, body)
	}

	for _, path := range []string{"/api/v1/reports/999999", "/reports/999999"} {
		if code, _ := getBody(t, e.url+path); code != http.StatusNotFound {
			t.Errorf("%s: %d, want 404", path, code)
		}
	}
	for _, path := range []string{"/api/v1/reports?status=bogus", "/reports?from=yesterday", "/reports/abc"} {
		if code, _ := getBody(t, e.url+path); code != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", path, code)
		}
	}
	var tls, failures struct {
		Total int `json:"total"`
	}
	getJSON(t, e.url+"/api/v1/tls", &tls)
	getJSON(t, e.url+"/api/v1/failures", &failures)
	wantTLS := queryInts(t, db, "SELECT count(*) FROM tls_reports")[0]
	wantFailures := queryInts(t, db, "SELECT count(*) FROM failure_reports")[0]
	if int64(tls.Total) != wantTLS || int64(failures.Total) != wantFailures || wantTLS == 0 || wantFailures == 0 {
		t.Errorf("API lists %d TLS and %d failure reports; the archive has %d and %d", tls.Total, failures.Total, wantTLS, wantFailures)
	}
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	code, body := getBody(t, url)
	if code != http.StatusOK {
		t.Fatalf("%s: %d %s", url, code, body)
	}
	if err := json.Unmarshal([]byte(body), v); err != nil {
		t.Fatalf("%s: %v", url, err)
	}
}

// explorerPaths are every page and API endpoint, for a report, a TLS
// report and a failure report of the archive.
func explorerPaths(t *testing.T, db *sql.DB) []string {
	report := queryInts(t, db, "SELECT min(id) FROM aggregate_reports")[0]
	tls := queryInts(t, db, "SELECT min(id) FROM tls_reports")[0]
	failure := queryInts(t, db, "SELECT min(id) FROM failure_reports")[0]
	return []string{"/", "/reports", fmt.Sprintf("/reports/%d", report), "/sources", "/sources?class=unknown",
		"/tls", fmt.Sprintf("/tls/%d", tls), "/failures", fmt.Sprintf("/failures/%d", failure), "/static/style.css",
		"/api/v1/reports", fmt.Sprintf("/api/v1/reports/%d", report), fmt.Sprintf("/api/v1/reports/%d/xml", report),
		"/api/v1/sources", "/api/v1/sources/addresses", "/api/v1/tls", fmt.Sprintf("/api/v1/tls/%d", tls),
		"/api/v1/failures", fmt.Sprintf("/api/v1/failures/%d", failure), "/api/v1/filters"}
}

// TestExplorerAuth: with basic auth configured, every page and API
// answers 401 without credentials and 200 with them.
func TestExplorerAuth(t *testing.T) {
	dir := t.TempDir()
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(dir, "web.yml")
	os.WriteFile(webCfg, []byte(fmt.Sprintf("basic_auth_users:\n  admin: %s\n", hash)), 0o600)
	// Read the corpus first without auth, then serve it with auth.
	e, storage := startCorpus(t)
	e.stop()
	e = startExporterAuth(t, webCfg, "--config.file="+filepath.Join(filepath.Dir(storage), "config.yml"), "--storage.path="+storage)
	db := openArchiveDB(t, storage)
	for _, path := range explorerPaths(t, db) {
		for _, c := range []struct {
			user, pass string
			want       int
		}{{"", "", 401}, {"admin", "wrong", 401}, {"admin", "s3cret", 200}} {
			req, _ := http.NewRequest("GET", e.url+path, nil)
			if c.user != "" {
				req.SetBasicAuth(c.user, c.pass)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != c.want {
				t.Errorf("%s as %q/%q: %d, want %d: %.200s", path, c.user, c.pass, resp.StatusCode, c.want, b)
			}
		}
	}
}

// startExporterAuth starts the exporter with a web configuration and
// waits until it answers (401 counts).
func startExporterAuth(t *testing.T, webCfg string, args ...string) *exporter {
	t.Helper()
	return startExporterWhen(t, func(code int) bool { return code == http.StatusUnauthorized },
		append(args, "--web.config.file="+webCfg)...)
}

// TestExplorerPrivacy: no page or API answer about failure reports shows
// a local part of an address or a subject of the failure reports read.
func TestExplorerPrivacy(t *testing.T) {
	e, storage := startCorpus(t)
	db := openArchiveDB(t, storage)
	var secrets []string
	files, _ := filepath.Glob(filepath.Join(testdata, "corpus", "failure", "*"))
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		fr, err := report.ParseFailure(bytes.NewReader(data), report.DefaultLimits())
		if err != nil {
			continue // refused: nothing of it is stored
		}
		if s := strings.TrimSpace(fr.Original.Subject); len(s) > 3 {
			secrets = append(secrets, s)
		}
		for _, a := range []string{fr.OriginalMailFrom, fr.OriginalRcptTo, fr.Original.From, fr.Original.To} {
			list, err := mail.ParseAddressList(a)
			if err != nil {
				if addr, err := mail.ParseAddress("<" + strings.Trim(a, "<> ") + ">"); err == nil {
					list = []*mail.Address{addr}
				}
			}
			for _, addr := range list {
				if local, _, ok := strings.Cut(addr.Address, "@"); ok && len(local) > 2 {
					secrets = append(secrets, local+"@")
				}
			}
		}
	}
	if len(secrets) < 3 {
		t.Fatalf("found %d subjects and local parts in the corpus: the test checks nothing", len(secrets))
	}
	paths := []string{"/failures", "/api/v1/failures?per_page=500"}
	for _, id := range queryInts(t, db, "SELECT id FROM failure_reports") {
		paths = append(paths, fmt.Sprintf("/failures/%d", id), fmt.Sprintf("/api/v1/failures/%d", id))
	}
	samples := queryInts(t, db, "SELECT count(*) FROM failure_reports WHERE redacted IS NOT NULL")[0]
	if samples == 0 {
		t.Fatal("no failure report sample kept: the test checks nothing")
	}
	for _, p := range paths {
		code, body := getBody(t, e.url+p)
		if code != 200 {
			t.Errorf("%s: %d", p, code)
		}
		for _, s := range secrets {
			if strings.Contains(body, s) || strings.Contains(body, htmlEscape(s)) {
				t.Errorf("%s shows %q", p, s)
			}
		}
	}
}

func htmlEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

// TestExplorerRoutePrefix: behind a proxy under /dmarc, the pages are
// served there and link there.
func TestExplorerRoutePrefix(t *testing.T) {
	e, storage := startCorpus(t)
	e.stop()
	// /-/healthy is under the prefix now: any answer means it listens.
	e = startExporterWhen(t, func(code int) bool { return code != 0 },
		"--config.file="+filepath.Join(filepath.Dir(storage), "config.yml"), "--storage.path="+storage,
		"--web.external-url=http://proxy.example/dmarc/")
	code, body := getBody(t, e.url+"/dmarc/reports")
	if code != 200 || !strings.Contains(body, `href="/dmarc/static/style.css"`) || !strings.Contains(body, `href="/dmarc/reports/`) {
		t.Errorf("/dmarc/reports: %d, links not under /dmarc:\n%.2000s", code, body)
	}
	if code, body := getBody(t, e.url+"/dmarc/"); code != 200 || !strings.Contains(body, `href="/dmarc/reports"`) {
		t.Errorf("/dmarc/ landing page: %d\n%.2000s", code, body)
	}
	if code, _ := getBody(t, e.url+"/dmarc/metrics"); code != 200 {
		t.Errorf("/dmarc/metrics: %d", code)
	}
	if code, _ := getBody(t, e.url+"/reports"); code != 404 {
		t.Errorf("/reports outside the prefix: %d, want 404", code)
	}
	if !strings.Contains(e.logs.String(), "url=http://proxy.example/dmarc/reports") {
		t.Errorf("the start-up log does not give the explorer's external URL:\n%s", e.logs)
	}
	e.stop()

	// A route prefix alone: served and linked there; the menu's metrics
	// link follows --web.telemetry-path.
	e = startExporterWhen(t, func(code int) bool { return code != 0 },
		"--config.file="+filepath.Join(filepath.Dir(storage), "config.yml"), "--storage.path="+storage,
		"--web.route-prefix=/dmarc", "--web.telemetry-path=/prom")
	code, body = getBody(t, e.url+"/dmarc/reports")
	if code != 200 || !strings.Contains(body, `href="/dmarc/static/style.css"`) || !strings.Contains(body, `href="/dmarc/prom"`) {
		t.Errorf("--web.route-prefix=/dmarc: /dmarc/reports %d, links not under /dmarc or no /dmarc/prom:\n%.2000s", code, body)
	}
	if code, _ := getBody(t, e.url+"/dmarc/static/style.css"); code != 200 {
		t.Errorf("/dmarc/static/style.css: %d", code)
	}
}

// TestExplorerPolicyBesideDNS: a report page sets the policy the reporter
// saw beside the DMARC record published now, as the DNS monitor sees it
// from a real authoritative server, and marks the tags that differ.
func TestExplorerPolicyBesideDNS(t *testing.T) {
	zone := filepath.Join(t.TempDir(), "zone.txt")
	// The corpus report for georgestarcher.com saw p=reject, adkim=s, aspf=s.
	os.WriteFile(zone, []byte(`_dmarc.georgestarcher.com. 300 IN TXT "v=DMARC1; p=quarantine; adkim=s; aspf=r; rua=mailto:dmarc@georgestarcher.com"`+"\n"), 0o644)
	srv := testenv.StartDNS(t, zone)
	agg := filepath.Join(testdata, "corpus", "aggregate")
	e := startExporter(t, "--source.dir="+agg, "--domain=georgestarcher.com",
		"--storage.path="+t.TempDir(), "--metrics.new-series-delay=0s", "--dns.resolver="+srv.Addr)
	e.waitScans(1, agg)
	e.waitFor("the DNS monitor's look at the DMARC record", func() bool {
		return e.metric("dmarc_dns_record_present", "domain", "georgestarcher.com", "record", "dmarc") == 1
	})
	var list struct {
		Items []struct {
			ID int64 `json:"id"`
		} `json:"items"`
	}
	getJSON(t, e.url+"/api/v1/reports?domain=georgestarcher.com", &list)
	if len(list.Items) == 0 {
		t.Fatal("no report of georgestarcher.com")
	}
	_, body := getBody(t, fmt.Sprintf("%s/reports/%d", e.url, list.Items[0].ID))
	rows := map[string]string{}
	for _, m := range regexp.MustCompile(`<tr><td>(\w+)</td><td>([^<]*)</td><td( class="differ"[^>]*)?>([^<]*)</td></tr>`).FindAllStringSubmatch(body, -1) {
		mark := ""
		if m[3] != "" {
			mark = " differs"
		}
		rows[m[1]] = m[2] + " | " + m[4] + mark
	}
	want := map[string]string{
		"p":     "reject | quarantine differs",
		"adkim": "s | s",
		"aspf":  "s | r differs",
		"sp":    "reject | quarantine (default) differs", // sp defaults to p
		"pct":   "100 | 100 (default)",                   // no difference
	}
	for tag, w := range want {
		if rows[tag] != w {
			t.Errorf("policy tag %s: %q, want %q (all: %v)", tag, rows[tag], w, rows)
		}
	}
	if !strings.Contains(body, "v=DMARC1; p=quarantine") {
		t.Error("the page does not show the record published now")
	}
}
