package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
)

// screenshotDir is where the browser tests write their screenshots:
// $DMARC_EXPORTER_SCREENSHOTS, else a directory under the system's
// temporary directory that the test prints and leaves for a person to
// look at.
func screenshotDir(t *testing.T) string {
	dir := os.Getenv("DMARC_EXPORTER_SCREENSHOTS")
	if dir == "" {
		dir = filepath.Join(os.TempDir(), "dmarc-exporter-screenshots")
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("screenshots in %s", dir)
	return dir
}

func screenshot(t *testing.T, b *testenv.Browser, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	// The whole page, unless it is taller than chromium captures (a long
	// XML view): then what the window shows.
	capture := chromedp.FullScreenshot(100)
	if testenv.Eval[int](t, b, `document.documentElement.scrollHeight`) > 8000 {
		capture = chromedp.CaptureScreenshot()
	}
	png, err := chromedp.Run(ctx, capture)
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// viewport writes what the window shows, as the README's pictures.
func viewport(t *testing.T, b *testenv.Browser, dir, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil {
		t.Fatalf("screenshot %s: %v", name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// load navigates and waits for the page's load event.
func load(t *testing.T, b *testenv.Browser, url string) {
	t.Helper()
	b.Do(t, chromedp.Navigate(url), chromedp.WaitReady(chromedp.CSS("main")))
}

// submitting runs a JavaScript action that submits a form, and waits for
// the page it loads.
func submitting(t *testing.T, b *testenv.Browser, js string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.WaitEvent(page.LoadEventFired, nil, chromedp.Evaluate[chromedp.Void](js))); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
}

// listedIDs are the reports the list page shows.
func listedIDs(t *testing.T, b *testenv.Browser) []int64 {
	ids := testenv.Eval[[]int64](t, b, `[...document.querySelectorAll("#reports tbody tr[data-id]")].map(r => +r.dataset.id)`)
	slices.Sort(ids)
	return ids
}

// TestExplorerBrowser drives Debian's chromium through the explorer on
// the corpus, as a user finding the failing reports would.
func TestExplorerBrowser(t *testing.T) {
	e, storage := startCorpus(t)
	db := openArchiveDB(t, storage)
	b := testenv.StartBrowser(t)
	shots := screenshotDir(t)
	want := failedReports(t, db)

	// The landing page leads to the reports.
	load(t, b, e.url+"/")
	submitting(t, b, `document.querySelector('a[href="/reports"]').click()`)
	if n := testenv.Eval[int](t, b, `document.querySelectorAll("#reports tbody tr[data-id]").length`); n == 0 {
		t.Fatal("the report list is empty")
	}
	screenshot(t, b, shots, "reports")

	// Click 1: "at least one failed" in the status filter. One page
	// holds them all at per_page=500.
	load(t, b, e.url+"/reports?per_page=500")
	submitting(t, b, `(s => { s.value = "failed"; s.dispatchEvent(new Event("change", {bubbles: true})); })(document.getElementById("filter-status"))`)
	loc := testenv.Eval[string](t, b, `location.search`)
	if !strings.Contains(loc, "status=failed") || !strings.Contains(loc, "per_page=500") || strings.Contains(loc, "month=") {
		t.Errorf("the URL does not carry the filter and the page size, or carries empty fields: %s", loc)
	}
	if got := listedIDs(t, b); !slices.Equal(got, want) {
		t.Errorf("'at least one failed' lists %v, the archive has failed records in %v", got, want)
	}
	if bad := testenv.Eval[[]string](t, b, `[...document.querySelectorAll("#reports tbody tr[data-id]")].map(r => r.dataset.status).filter(s => s !== "failed")`); len(bad) > 0 {
		t.Errorf("rows coloured %v under 'at least one failed'", bad)
	}
	screenshot(t, b, shots, "reports-failed")
	viewport(t, b, shots, "readme-reports")

	// The filter survives a reload.
	b.Do(t, chromedp.Reload(), chromedp.WaitReady(chromedp.CSS("#reports")))
	if v := testenv.Eval[string](t, b, `document.getElementById("filter-status").value`); v != "failed" {
		t.Errorf("after a reload the status filter is %q", v)
	}
	if got := listedIDs(t, b); !slices.Equal(got, want) {
		t.Errorf("after a reload the list is %v, want %v", got, want)
	}

	// Click 2: a failing report, with every record and result.
	first := testenv.Eval[int64](t, b, `+document.querySelector("#reports tbody tr[data-id]").dataset.id`)
	submitting(t, b, `document.querySelector("#reports tbody tr[data-id] a").click()`)
	checkReportPage(t, b, db, first)
	if n := testenv.Eval[int](t, b, `document.querySelectorAll("#records tr[data-status=fail]").length`); n == 0 {
		t.Errorf("report %d: no record marked failed", first)
	}
	if why := testenv.Eval[string](t, b, `document.querySelector("#records tr.record-fail.why-row td.why").textContent`); why == "" {
		t.Errorf("report %d: a failed record without a reason", first)
	}
	screenshot(t, b, shots, "report")
	viewport(t, b, shots, "readme-report")

	// The report with the most DKIM and SPF results shows every one.
	busiest := queryInts(t, db, `SELECT report FROM (SELECT report, count(*) n FROM record_dkim GROUP BY report
		UNION ALL SELECT report, count(*) FROM record_spf GROUP BY report) GROUP BY report ORDER BY sum(n) DESC, report LIMIT 1`)[0]
	load(t, b, fmt.Sprintf("%s/reports/%d", e.url, busiest))
	checkReportPage(t, b, db, busiest)

	// The XML view shows the original.
	var reportID string
	if err := db.QueryRow("SELECT report_id FROM aggregate_reports WHERE id = ?", busiest).Scan(&reportID); err != nil {
		t.Fatal(err)
	}
	b.Do(t, chromedp.Click(chromedp.ID("show-xml")), chromedp.WaitVisible(chromedp.ID("xml")))
	xml := testenv.Eval[string](t, b, `document.getElementById("xml").textContent`)
	if !strings.Contains(xml, "<report_id>"+reportID+"</report_id>") || !strings.Contains(xml, "<feedback") {
		t.Errorf("the XML view of report %d does not show the original (report_id %s):\n%.600s", busiest, reportID, xml)
	}
	screenshot(t, b, shots, "report-xml")

	// The theme toggles, changes the colours, and stays after a reload.
	before := testenv.Eval[string](t, b, `document.documentElement.dataset.theme + " " + getComputedStyle(document.body).backgroundColor`)
	b.Do(t, chromedp.Click(chromedp.ID("theme-toggle")))
	after := testenv.Eval[string](t, b, `document.documentElement.dataset.theme + " " + getComputedStyle(document.body).backgroundColor`)
	if before == after || !strings.HasPrefix(after, "dark") && !strings.HasPrefix(after, "light") {
		t.Errorf("theme toggle: %q then %q", before, after)
	}
	b.Do(t, chromedp.Reload(), chromedp.WaitReady(chromedp.CSS("main")))
	if again := testenv.Eval[string](t, b, `document.documentElement.dataset.theme + " " + getComputedStyle(document.body).backgroundColor`); again != after {
		t.Errorf("after a reload the theme is %q, was %q", again, after)
	}
	if !strings.HasPrefix(after, "dark") {
		b.Do(t, chromedp.Click(chromedp.ID("theme-toggle")))
	}
	load(t, b, e.url+"/reports?status=failed")
	screenshot(t, b, shots, "reports-dark")

	// Sources: unknown and threat first; a drill down to addresses and
	// on to their reports.
	load(t, b, e.url+"/sources")
	classes := testenv.Eval[[]string](t, b, `[...document.querySelectorAll("#sources tbody tr[data-class]")].map(r => r.dataset.class)`)
	if len(classes) == 0 {
		t.Fatal("the sources page lists no source")
	}
	rank := map[string]int{"threat": 0, "unknown": 1, "misconfigured": 2, "mailing_list": 3, "forwarded": 4, "authorized": 5}
	if !slices.IsSortedFunc(classes, func(a, b string) int { return rank[a] - rank[b] }) {
		t.Errorf("sources are not in the order threat, unknown, ...: %v", classes)
	}
	screenshot(t, b, shots, "sources")
	submitting(t, b, `document.querySelector("#sources tbody tr[data-class] td:nth-child(2) a").click()`)
	if n := testenv.Eval[int](t, b, `document.querySelectorAll("#addresses tbody tr").length`); n == 0 {
		t.Error("the drill down lists no address")
	}
	submitting(t, b, `document.querySelector("#addresses tbody tr a").click()`)
	if n := testenv.Eval[int](t, b, `document.querySelectorAll("#reports tbody tr[data-id]").length`); n == 0 {
		t.Error("an address leads to no report")
	}

	// TLS and failure reports, list and detail.
	for _, p := range []string{"/tls", "/failures"} {
		load(t, b, e.url+p)
		submitting(t, b, `document.querySelector("main table tbody tr a").click()`)
		if h := testenv.Eval[string](t, b, `document.querySelector("h1").textContent`); h == "" {
			t.Errorf("%s: the detail page has no heading", p)
		}
		screenshot(t, b, shots, strings.TrimPrefix(p, "/"))
	}

	// On a phone the page is no wider than the screen: wide tables
	// scroll inside their box.
	ctx, cancel := context.WithTimeout(b.Ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2))); err != nil {
		t.Fatal(err)
	}
	load(t, b, fmt.Sprintf("%s/reports/%d", e.url, busiest))
	if w := testenv.Eval[[]int](t, b, `[document.documentElement.scrollWidth, window.innerWidth]`); w[0] > w[1] {
		wide := testenv.Eval[[]string](t, b, `[...document.querySelectorAll("body, body *")].filter(e => (e.scrollWidth > window.innerWidth || e.getBoundingClientRect().right > window.innerWidth) && !(e.parentElement && e.parentElement.closest(".scroll"))).slice(0, 12).map(e => e.tagName + "." + e.className + " sw=" + e.scrollWidth + " r=" + Math.round(e.getBoundingClientRect().right))`)
		t.Errorf("on a 390px screen the report page is %dpx wide: %v", w[0], wide)
	}
	screenshot(t, b, shots, "report-phone")

	if errs := b.Errors(); len(errs) > 0 {
		t.Errorf("the browser logged errors:\n%s", strings.Join(errs, "\n"))
	}
}

// checkReportPage checks that the report page shows every record of the
// report and every DKIM and SPF result of each, as the archive has them.
func checkReportPage(t *testing.T, b *testenv.Browser, db *sql.DB, id int64) {
	t.Helper()
	records := queryInts(t, db, "SELECT count(*) FROM aggregate_records WHERE report = ?", id)[0]
	if n := testenv.Eval[int64](t, b, `document.querySelectorAll("#records tbody tr[data-n]").length`); n != records {
		t.Errorf("report %d: the page shows %d records, the archive has %d", id, n, records)
	}
	for _, kind := range []struct{ table, class, third string }{{"record_dkim", "dkim", "selector"}, {"record_spf", "spf", "scope"}} {
		rows, err := db.Query("SELECT n, result, domain, "+kind.third+" FROM "+kind.table+" WHERE report = ? ORDER BY n, i", id)
		if err != nil {
			t.Fatal(err)
		}
		want := map[int][]string{}
		for rows.Next() {
			var n int
			var result, domain, third string
			if err := rows.Scan(&n, &result, &domain, &third); err != nil {
				t.Fatal(err)
			}
			want[n] = append(want[n], strings.Join(strings.Fields(result+" "+domain+" "+third), " "))
		}
		rows.Close()
		got := testenv.Eval[map[string][]string](t, b, `Object.fromEntries([...document.querySelectorAll("#records tbody tr[data-n]")].map(r =>
			[r.dataset.n, [...r.querySelectorAll("ul.`+kind.class+` li:not(.muted)")].map(li => li.textContent.replace("s=", "").trim().split(/\s+/).join(" "))]))`)
		for n := range int(records) {
			if g := got[fmt.Sprint(n)]; !slices.Equal(g, want[n]) && !(len(g) == 0 && len(want[n]) == 0) {
				t.Errorf("report %d record %d: %s results %q on the page, %q in the archive", id, n, kind.class, g, want[n])
			}
		}
	}
}
