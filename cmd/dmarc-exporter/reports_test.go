package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// TestReportsCommand: `reports list` selects what the explorer selects,
// from the archive directly; `reports show` gives every record.
func TestReportsCommand(t *testing.T) {
	e, storage := startCorpus(t)
	db := openArchiveDB(t, storage)
	want := failedReports(t, db)
	cmd := func(wantStatus int, args ...string) (string, string) {
		t.Helper()
		var out, errOut bytes.Buffer
		if status := run(append([]string{"reports", "--storage.path=" + storage}, args...), &out, &errOut); status != wantStatus {
			t.Fatalf("%v: status %d, want %d\n%s%s", args, status, wantStatus, out.String(), errOut.String())
		}
		return out.String(), errOut.String()
	}
	// While the exporter runs, and after it stopped.
	for _, running := range []bool{true, false} {
		if !running {
			e.stop()
		}
		out, _ := cmd(0, "--format=json", "list", "--status=failed", "--per-page=500")
		var list struct {
			Total int `json:"total"`
			Items []struct {
				ID int64 `json:"id"`
			} `json:"items"`
		}
		if err := json.Unmarshal([]byte(out), &list); err != nil {
			t.Fatal(err)
		}
		var got []int64
		for _, it := range list.Items {
			got = append(got, it.ID)
		}
		slices.Sort(got)
		if !slices.Equal(got, want) || list.Total != len(want) {
			t.Errorf("running %v: list --status=failed gives %v, want %v", running, got, want)
		}
	}

	// The table: a header and one line per report of the page.
	out, summary := cmd(0, "list", "--status=failed", "--per-page=3")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 4 || !strings.HasPrefix(lines[0], "ID") {
		t.Errorf("list as a table:\n%s", out)
	}
	if !strings.Contains(summary, fmt.Sprintf("3 of %d reports", len(want))) {
		t.Errorf("list summary: %s", summary)
	}

	// show: every record, and why each failed one failed.
	id := want[0]
	records := queryInts(t, db, "SELECT count(*) FROM aggregate_records WHERE report = ?", id)[0]
	failed := queryInts(t, db, "SELECT count(*) FROM aggregate_records WHERE report = ? AND dmarc <> 'pass'", id)[0]
	out, _ = cmd(0, "show", fmt.Sprint(id))
	table, why, _ := strings.Cut(out, "\nwhy:\n")
	_, rows, _ := strings.Cut(table, "#  STATUS")
	if n := len(strings.Split(strings.TrimSpace(rows), "\n")) - 1; int64(n) != records {
		t.Errorf("show %d: %d record lines, the archive has %d:\n%s", id, n, records, out)
	}
	if n := strings.Count(strings.TrimSpace(why), "\n") + 1; int64(n) < failed || why == "" {
		t.Errorf("show %d: %d reasons for %d failed records:\n%s", id, n, failed, out)
	}
	out, _ = cmd(0, "--format=json", "show", fmt.Sprint(id))
	var detail struct {
		Records []struct {
			Explanation string `json:"explanation"`
		} `json:"records_detail"`
	}
	if err := json.Unmarshal([]byte(out), &detail); err != nil || int64(len(detail.Records)) != records {
		t.Errorf("show --format=json: %d records (%v), want %d", len(detail.Records), err, records)
	}

	cmd(1, "show", "999999")
	cmd(2, "list", "--status=bogus")
	var out2, errOut bytes.Buffer
	if status := run([]string{"reports", "--storage.path=" + t.TempDir(), "list"}, &out2, &errOut); status != 1 || !strings.Contains(errOut.String(), "no archive") {
		t.Errorf("on a directory without an archive: status %d, %s", status, errOut.String())
	}
}
