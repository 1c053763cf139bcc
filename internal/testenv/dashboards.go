package testenv

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// PanelQuery is a query of a dashboard panel.
type PanelQuery struct{ File, Title, Expr string }

// PanelQueries lists the queries of the dashboards matching pattern, with
// the variables set to "everything", as a real Prometheus runs them.
func PanelQueries(t testing.TB, pattern string) []PanelQuery {
	t.Helper()
	files, _ := filepath.Glob(pattern)
	if len(files) == 0 {
		t.Fatalf("no dashboard matches %s", pattern)
	}
	vars := strings.NewReplacer(`"$domain"`, `".*"`, `"$reporter"`, `".*"`, `"$class"`, `".*"`)
	var out []PanelQuery
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var d struct {
			Panels []struct {
				Title   string `json:"title"`
				Targets []struct {
					Expr string `json:"expr"`
				} `json:"targets"`
			} `json:"panels"`
		}
		if err := json.Unmarshal(data, &d); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for _, p := range d.Panels {
			for _, q := range p.Targets {
				out = append(out, PanelQuery{filepath.Base(f), p.Title, vars.Replace(q.Expr)})
			}
		}
	}
	return out
}
