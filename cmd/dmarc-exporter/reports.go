package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"

	"github.com/alecthomas/kingpin/v2"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/explorer"
)

// reportsCmd is `dmarc-exporter reports list|show`: the report explorer
// on a terminal, reading the archive under --storage.path directly (the
// exporter may be running).
type reportsCmd struct {
	cmd, list, show *kingpin.CmdClause
	storagePath     *string
	format          *string
	// The filters of the explorer's list, by the same names.
	filters map[string]*[]string
	id      *int64
}

// reportFilters are the explorer's query parameters, as flags.
var reportFilters = []struct{ name, help string }{
	{"domain", "Only reports of this domain label (repeatable)."},
	{"reporter", "Only reports of this reporter label (repeatable)."},
	{"month", "Only reports of this month (YYYY-MM)."},
	{"from", "Only reports whose range ends after this day (YYYY-MM-DD)."},
	{"to", "Only reports whose range begins on or before this day (YYYY-MM-DD)."},
	{"dmarc", "DMARC result of every record: pass, fail or mixed."},
	{"status", "Report status: passed (DKIM and SPF everywhere), failed (a record failed DMARC) or other."},
	{"class", "Only reports with a record of this source class."},
	{"asn", "Only reports with a record from this AS."},
	{"ip", "Only reports with a record from this address."},
	{"name", "Only reports with a record from this source name."},
	{"sort", "Order: begin, end, received, domain, reporter, records, messages or failed."},
	{"order", "asc or desc (the default)."},
	{"page", "Page, from 1."},
	{"per_page", "Reports per page (at most 500)."},
}

func newReportsCmd(app *kingpin.Application) *reportsCmd {
	c := &reportsCmd{cmd: app.Command("reports", "List and show the aggregate reports of the archive under --storage.path."),
		filters: map[string]*[]string{}}
	c.storagePath = c.cmd.Flag("storage.path", "Directory of the archive (dmarc.db).").Default("data").String()
	c.format = c.cmd.Flag("format", "Output: table or json (as the API answers).").Default("table").Enum("table", "json")
	c.list = c.cmd.Command("list", "List the reports the filters select, newest first.")
	for _, f := range reportFilters {
		c.filters[f.name] = c.list.Flag(strings.ReplaceAll(f.name, "_", "-"), f.help).Strings()
	}
	c.show = c.cmd.Command("show", "Show a report with every record, its results and why a record failed.")
	c.id = c.show.Arg("id", "The report's number, as the list gives it.").Required().Int64()
	return c
}

func (c *reportsCmd) run(cmd string, stdout, stderr io.Writer) int {
	// Reading never creates nor upgrades an archive.
	arc, err := archive.OpenExisting(*c.storagePath)
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 1
	}
	defer arc.Close()
	ctx := context.Background()
	if cmd == c.show.FullCommand() {
		d, err := arc.Report(ctx, *c.id)
		if errors.Is(err, archive.ErrNotFound) {
			fmt.Fprintf(stderr, "dmarc-exporter: report %d: %v\n", *c.id, err)
			return 1
		}
		if err != nil {
			fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
			return 1
		}
		if *c.format == "json" {
			return writeJSONTo(stdout, stderr, explorer.Explained(d))
		}
		printReport(stdout, explorer.Explained(d))
		return 0
	}
	v := url.Values{}
	for name, values := range c.filters {
		for _, val := range *values {
			v.Add(name, val)
		}
	}
	q, err := explorer.ParseQuery(v)
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 2
	}
	rows, total, err := arc.Reports(ctx, q.ReportFilter, q.Sort, q.Desc, q.Offset(), q.PerPage)
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 1
	}
	if *c.format == "json" {
		return writeJSONTo(stdout, stderr, map[string]any{"total": total, "page": q.Page, "per_page": q.PerPage, "items": rows})
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTATUS\tBEGIN\tEND\tDOMAIN\tREPORTER\tRECORDS\tMESSAGES\tDMARC FAIL\tREPORT ID")
	for _, r := range rows {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%d\t%s\n", r.ID, r.Status, r.Begin.Format("2006-01-02 15:04"),
			r.End.Format("2006-01-02 15:04"), r.Domain, r.Reporter, r.Records, r.Messages, r.FailedMessages, cut(r.ReportID, 40))
	}
	tw.Flush()
	fmt.Fprintf(stderr, "%d of %d reports (page %d of %d)\n", len(rows), total, q.Page, max(1, (total+q.PerPage-1)/q.PerPage))
	return 0
}

func writeJSONTo(stdout, stderr io.Writer, v any) int {
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 1
	}
	return 0
}

// printReport writes a report for a terminal: what it says, the policy
// the reporter saw, and a table of its records, each failed one followed
// by why.
func printReport(w io.Writer, r *explorer.Report) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "report\t%d (%s)\n", r.ID, r.Status)
	fmt.Fprintf(tw, "reporter\t%s (%s) %s\n", r.OrgName, r.Reporter, r.Email)
	fmt.Fprintf(tw, "report id\t%s\n", r.ReportID)
	fmt.Fprintf(tw, "period\t%s to %s\n", r.Begin.Format("2006-01-02 15:04 MST"), r.End.Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(tw, "domain\t%s (policy domain %s)\n", r.Domain, r.Published.Domain)
	p := r.Published
	pct := ""
	if p.Pct != nil {
		pct = " pct=" + strconv.Itoa(*p.Pct)
	}
	fmt.Fprintf(tw, "policy seen\tp=%s sp=%s np=%s adkim=%s aspf=%s%s\n", p.P, p.SP, p.NP, p.ADKIM, p.ASPF, pct)
	fmt.Fprintf(tw, "messages\t%d, %d failed DMARC, in %d records\n", r.Messages, r.FailedMessages, r.Records)
	fmt.Fprintf(tw, "input\t%s\n", r.Input)
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "#\tSTATUS\tSOURCE\tNAME\tAS\tCLASS\tCOUNT\tDISPOSITION\tDKIM\tSPF\tALIGNED DKIM/SPF\tDMARC")
	for _, rec := range r.Rows {
		var dkim, spf []string
		for _, d := range rec.DKIMResults {
			dkim = append(dkim, fmt.Sprintf("%s:%s", d.Domain, d.Result))
		}
		for _, s := range rec.SPFResults {
			spf = append(spf, fmt.Sprintf("%s:%s", s.Domain, s.Result))
		}
		asn := ""
		if rec.Source.ASN != 0 {
			asn = "AS" + strconv.FormatUint(uint64(rec.Source.ASN), 10)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\t%s/%s\t%s\n", rec.N, rec.Status, orDash(rec.SourceIP),
			orDash(rec.Source.Name), orDash(asn), rec.Source.Class, rec.Count, rec.Disposition, orDash(strings.Join(dkim, ",")),
			orDash(strings.Join(spf, ",")), rec.DKIM, rec.SPF, rec.DMARC)
	}
	tw.Flush()
	first := true
	for _, rec := range r.Rows {
		if rec.Status == archive.RecordPassed {
			continue
		}
		if first {
			fmt.Fprintln(w, "\nwhy:")
			first = false
		}
		fmt.Fprintf(w, "%d  %s\n", rec.N, rec.Explanation)
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-1] + "…"
}
