package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
)

// archiveCmd is `dmarc-exporter archive stats|check|vacuum`: the archive
// under --storage.path, for operators.
type archiveCmd struct {
	cmd, stats, check, vacuum, copy *kingpin.CmdClause
	storagePath                     *string
	to                              *string
}

func newArchiveCmd(app *kingpin.Application) *archiveCmd {
	c := &archiveCmd{cmd: app.Command("archive", "Look after the archive under --storage.path.")}
	c.storagePath = c.cmd.Flag("storage.path", "Directory of the archive (dmarc.db).").Default("data").String()
	c.stats = c.cmd.Command("stats", "Print the archive's size, rows per table, and its oldest and newest report.")
	c.check = c.cmd.Command("check", "Check the archive's integrity (SQLite integrity and foreign key checks); exit 1 on a problem.")
	c.vacuum = c.cmd.Command("vacuum", "Rebuild the archive to give back the space of deleted reports (writes wait meanwhile).")
	c.copy = c.cmd.Command("copy", "Copy the SQLite archive into a new PostgreSQL archive (stop the exporter first), to move to PostgreSQL.")
	c.to = c.copy.Flag("to", "The PostgreSQL archive: postgres://user@host:port/database (empty).").Required().String()
	return c
}

func (c *archiveCmd) run(cmd string, stdout, stderr io.Writer) int {
	arc, err := archive.Open(*c.storagePath)
	if err != nil {
		fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
		return 1
	}
	defer arc.Close()
	ctx := context.Background()
	switch cmd {
	case c.stats.FullCommand():
		st, err := arc.Stats(ctx)
		if err != nil {
			fmt.Fprintf(stderr, "dmarc-exporter: archive %s: %v\n", arc.Path(), err)
			return 1
		}
		printStats(stdout, st)
	case c.check.FullCommand():
		if err := arc.Check(ctx); err != nil {
			fmt.Fprintf(stderr, "archive %s has problems:\n%v\n", arc.Path(), err)
			return 1
		}
		fmt.Fprintf(stdout, "archive %s is sound\n", arc.Path())
	case c.copy.FullCommand():
		dst, err := archive.OpenURL(*c.to)
		if err != nil {
			fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
			return 1
		}
		defer dst.Close()
		tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "rows\ttable\t")
		err = arc.CopyTo(ctx, dst, func(table string, rows int64) { fmt.Fprintf(tw, "%d\t%s\t\n", rows, table) })
		tw.Flush()
		if err != nil {
			fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
			return 1
		}
		fmt.Fprintf(stdout, "copied %s into %s: set archive.url to it\n", arc.Path(), *c.to)
	case c.vacuum.FullCommand():
		before, _ := arc.Stats(ctx)
		if err := arc.Vacuum(ctx); err != nil {
			fmt.Fprintf(stderr, "dmarc-exporter: %v\n", err)
			return 1
		}
		after, _ := arc.Stats(ctx)
		if before != nil && after != nil {
			fmt.Fprintf(stdout, "archive %s: %s before, %s after\n", arc.Path(), byteSize(before.Bytes), byteSize(after.Bytes))
		}
	}
	return 0
}

func printStats(w io.Writer, st *archive.Stats) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "archive\t%s\nschema version\t%d\nsize\t%s\n", st.Path, st.SchemaVersion, byteSize(st.Bytes))
	if !st.OldestReport.IsZero() {
		fmt.Fprintf(tw, "oldest report\t%s\nnewest report\t%s\n", st.OldestReport.Format(time.DateOnly), st.NewestReport.Format(time.DateOnly))
	}
	if n := st.Rows["aggregate_records"]; n > 0 {
		fmt.Fprintf(tw, "bytes per record\t%d\n", st.Bytes/n)
	}
	tw.Flush()
	fmt.Fprintln(w)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "rows\ttable\t")
	tables := make([]string, 0, len(st.Rows))
	for t := range st.Rows {
		tables = append(tables, t)
	}
	slices.Sort(tables)
	for _, t := range tables {
		fmt.Fprintf(tw, "%d\t%s\t\n", st.Rows[t], t)
	}
	tw.Flush()
}

// byteSize writes n in the largest binary unit that keeps it at least 1.
func byteSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	v, i := float64(n), 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%d B", n)
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", v), ".0") + " " + units[i]
}
