package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/dmarc-exporter/dmarc-exporter/collector"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/enrich"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// parseCmd is `dmarc-exporter parse FILE...`: it prints one JSON object per
// report per line on stdout and `FILE: reason` on stderr for each file that
// fails. A file's reports are printed only when the whole file was read, so
// the output never holds part of a broken file.
type parseCmd struct {
	cmd        *kingpin.CmdClause
	files      *[]string
	enrich     *bool
	configFile *string
	asnDB      *string
	countryDB  *string
	format     *string
	stderr     io.Writer
}

func newParseCmd(app *kingpin.Application) *parseCmd {
	c := &parseCmd{cmd: app.Command("parse", "Print every report found in FILEs as one JSON object per line.")}
	c.files = c.cmd.Arg("file", "report files (XML, gzip, zip or whole mails) or directories to read recursively").Required().Strings()
	c.enrich = c.cmd.Flag("enrich", "Add each record's source identity and class, and why, as the exporter gives them.").Bool()
	c.configFile = c.cmd.Flag("config", "With --enrich: the exporter's configuration file, for its senders section (databases, trust).").String()
	c.asnDB = c.cmd.Flag("asn-database", "With --enrich: a MaxMind-format ASN database.").String()
	c.countryDB = c.cmd.Flag("country-database", "With --enrich: a MaxMind-format country database.").String()
	c.format = c.cmd.Flag("format", "json: one JSON object per report, with its records; summary: one tab-separated line per report (input, kind, reporter, report id, domain, begin, end, totals); counted: one JSON object per report with what the exporter counts of it (its identity and counter increments).").
		Default("json").Enum("json", "summary", "counted")
	return c
}

// enricher builds the enricher of --enrich, as the exporter would.
func (c *parseCmd) enricher(resolvers []string) (*enrich.Enricher, error) {
	cfg := config.Default()
	if *c.configFile != "" {
		var err error
		if cfg, err = config.Load(*c.configFile); err != nil {
			return nil, err
		}
	}
	if *c.asnDB != "" {
		cfg.Senders.ASNDatabase = *c.asnDB
	}
	if *c.countryDB != "" {
		cfg.Senders.CountryDatabase = *c.countryDB
	}
	resolver, err := newResolver(resolvers)
	if err != nil {
		fmt.Fprintf(c.stderr, "enrich: no DNS resolver, so no names: %v\n", err)
		resolver = nil
	}
	e, _, err := buildEnricher(cfg.Senders, resolver, nil, nil)
	return e, err
}

func (c *parseCmd) run(resolvers []string, stdout, stderr io.Writer) int {
	status := 0
	lim := report.DefaultLimits()
	var enr *enrich.Enricher
	c.stderr = stderr
	if *c.enrich {
		var err error
		if enr, err = c.enricher(resolvers); err != nil {
			fmt.Fprintf(stderr, "enrich: %v\n", err)
			return 1
		}
	}
	out := bufio.NewWriterSize(stdout, 1<<20)
	defer out.Flush()
	for _, arg := range *c.files {
		err := forEachFile(arg, func(name string) {
			if err := parseFile(name, lim, enr, *c.format, out); err != nil {
				out.Flush() // the lines of the files before, then the error
				fmt.Fprintf(stderr, "%s: %v\n", name, err)
				status = 1
			}
		})
		if err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", arg, err)
			status = 1
		}
	}
	return status
}

// forEachFile calls fn for name, or for every regular file below it, in
// lexical order, when name is a directory.
func forEachFile(name string, fn func(string)) error {
	fi, err := os.Stat(name)
	if err != nil {
		return err
	}
	if !fi.IsDir() {
		fn(name)
		return nil
	}
	return filepath.WalkDir(name, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fn(path)
		}
		return nil
	})
}

// parseFile writes the NDJSON lines of one file to out, or nothing and an
// error.
func parseFile(name string, lim report.Limits, enr *enrich.Enricher, format string, out io.Writer) error {
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	if format == "counted" {
		return writeCounted(out, name, f, lim, enr)
	}
	summary := format == "summary"
	buf := newSpillBuffer(8 << 20)
	defer buf.Close()
	err = report.Walk(f, lim, func(doc report.Document) error {
		if summary {
			switch doc.Kind {
			case report.KindSMTPTLS:
				return summarizeTLS(buf, name, doc, lim)
			case report.KindFailure:
				return summarizeFailure(buf, name, doc, lim)
			}
			return summarizeAggregate(buf, name, doc, lim)
		}
		switch doc.Kind {
		case report.KindSMTPTLS:
			return writeTLS(buf, name, doc, lim)
		case report.KindFailure:
			return writeFailure(buf, name, doc, lim)
		}
		return writeAggregate(buf, name, doc, lim, enr)
	})
	if err != nil {
		return err
	}
	return buf.CopyTo(out)
}

// aggregateJSON is the head of one output line; records follow it.
type aggregateJSON struct {
	File             string                 `json:"file"`
	Part             string                 `json:"part,omitempty"`
	Kind             report.Kind            `json:"kind"`
	Reporter         string                 `json:"reporter"` // the reporter label, as on /metrics
	ReporterOrg      string                 `json:"reporter_org"`
	ReporterEmail    string                 `json:"reporter_email"`
	ExtraContactInfo string                 `json:"extra_contact_info,omitempty"`
	ReportID         string                 `json:"report_id"`
	Domain           string                 `json:"domain"`
	Begin            string                 `json:"begin"`
	End              string                 `json:"end"`
	Version          string                 `json:"version,omitempty"`
	Namespace        string                 `json:"namespace,omitempty"`
	Generator        string                 `json:"generator,omitempty"`
	Errors           []string               `json:"errors,omitempty"`
	Policy           report.PolicyPublished `json:"policy"`
	Extensions       []report.Extension     `json:"extensions,omitempty"`
	Records          int                    `json:"record_count"`
	Messages         uint64                 `json:"message_count"`
	Flagged          int                    `json:"flagged_records"`
	Repairs          report.Repairs         `json:"repairs,omitzero"`
}

// writeAggregate decodes one aggregate report and writes its line. Records
// stream through a temporary buffer so that the head, which comes first,
// can carry the totals.
func writeAggregate(w io.Writer, name string, doc report.Document, lim report.Limits, enr *enrich.Enricher) error {
	dec := report.NewAggregateDecoder(doc.Body, lim)
	hdr, err := dec.Header()
	if err != nil {
		return err
	}
	recs := newSpillBuffer(8 << 20)
	defer recs.Close()
	var messages uint64
	var flagged int
	records := dec.All()
	n := 0
	var sources func(*report.Record) *sourceJSON
	if enr != nil {
		// The whole report is identified at once, busiest sources first,
		// as the exporter does.
		var all []*report.Record
		for rec, err := range records {
			if err != nil {
				return err
			}
			all = append(all, rec)
		}
		records = func(yield func(*report.Record, error) bool) {
			for _, rec := range all {
				if !yield(rec, nil) {
					return
				}
			}
		}
		sources = sourcesOf(enr, hdr.Policy.Domain, all)
	}
	for rec, err := range records {
		if err != nil {
			return err
		}
		if n++; n > 1 {
			recs.Write([]byte{','})
		}
		var line []byte
		if sources != nil && rec.Problem == "" {
			line, err = json.Marshal(enrichedRecord{rec, sources(rec)})
		} else {
			line, err = json.Marshal(rec)
		}
		if err != nil {
			return err
		}
		recs.Write(line)
		messages += rec.Count
		if rec.Problem != "" {
			flagged++
		}
	}
	head, err := json.Marshal(aggregateJSON{
		File:             name,
		Part:             doc.Part,
		Kind:             report.KindAggregate,
		Reporter:         collector.ReporterName(hdr.Metadata.Email, hdr.Metadata.OrgName, config.DefaultLabelLength),
		ReporterOrg:      hdr.Metadata.OrgName,
		ReporterEmail:    hdr.Metadata.Email,
		ExtraContactInfo: hdr.Metadata.ExtraContactInfo,
		ReportID:         hdr.Metadata.ReportID,
		Domain:           hdr.Policy.Domain,
		Begin:            hdr.Metadata.Begin.UTC().Format(time.RFC3339),
		End:              hdr.Metadata.End.UTC().Format(time.RFC3339),
		Version:          hdr.Version,
		Namespace:        hdr.Namespace,
		Generator:        hdr.Metadata.Generator,
		Errors:           hdr.Metadata.Errors,
		Policy:           hdr.Policy,
		Extensions:       hdr.Extensions,
		Records:          dec.RecordCount(),
		Messages:         messages,
		Flagged:          flagged,
		Repairs:          hdr.Repairs,
	})
	if err != nil {
		return err
	}
	// head is `{...}`: reopen it to append the records array.
	if _, err := w.Write(head[:len(head)-1]); err != nil {
		return err
	}
	if _, err := io.WriteString(w, `,"records":[`); err != nil {
		return err
	}
	if err := recs.CopyTo(w); err != nil {
		return err
	}
	_, err = io.WriteString(w, "]}\n")
	return err
}

// enrichedRecord is a record with its source, for parse --enrich.
type enrichedRecord struct {
	*report.Record
	Source *sourceJSON `json:"source"`
}

// sourceJSON is what the exporter makes of a record's source: the labels
// of dmarc_source_messages_total, and how it got them.
type sourceJSON struct {
	ASN            uint   `json:"asn,omitempty"`
	ASOrg          string `json:"as_org,omitempty"`
	Country        string `json:"country,omitempty"`
	Host           string `json:"host,omitempty"` // registrable domain of the confirmed name
	Name           string `json:"name"`
	SenderType     string `json:"sender_type,omitempty"`
	TrustedNetwork string `json:"trusted_network,omitempty"`
	TrustedService bool   `json:"trusted_service,omitempty"`
	Class          string `json:"class"`
	Reason         string `json:"reason"`
	// Labels are the label values dmarc_source_messages_total gets.
	Labels map[string]string `json:"labels"`
}

// sourcesOf identifies the sources of a report's records and returns what
// to print for each record.
func sourcesOf(enr *enrich.Enricher, domain string, recs []*report.Record) func(*report.Record) *sourceJSON {
	ids := collector.IdentifyRecords(enr, domain, recs)
	return func(rec *report.Record) *sourceJSON {
		id := ids[rec.SourceIP]
		l := collector.SourceLabels(id, enrich.FactsOf(rec), config.DefaultLabelLength)
		out := &sourceJSON{ASN: id.ASN, ASOrg: id.ASOrg, Country: id.Country, Host: id.Host, Name: id.Name(),
			TrustedNetwork: id.TrustedNetwork, TrustedService: id.TrustedService, Class: l.Class, Reason: l.Reason,
			Labels: map[string]string{"source_asn": l.ASN, "source_org": l.Org, "source_country": l.Country, "source_name": l.Name, "source_class": l.Class}}
		if id.Sender != nil {
			out.SenderType = id.Sender.Type
		}
		return out
	}
}

// tlsJSON is the line of an SMTP TLS report.
type tlsJSON struct {
	File          string                   `json:"file"`
	Part          string                   `json:"part,omitempty"`
	Kind          report.Kind              `json:"kind"`
	Reporter      string                   `json:"reporter"` // the reporter label, as on /metrics
	ReporterOrg   string                   `json:"reporter_org"`
	ReporterEmail string                   `json:"reporter_email"`
	ReportID      string                   `json:"report_id"`
	Begin         string                   `json:"begin"`
	End           string                   `json:"end"`
	Policies      []report.TLSPolicyResult `json:"policies"`
}

func writeTLS(w io.Writer, name string, doc report.Document, lim report.Limits) error {
	r, err := report.ParseTLSReport(doc.Body, lim)
	if err != nil {
		return err
	}
	return writeLine(w, tlsJSON{
		File: name, Part: doc.Part, Kind: doc.Kind,
		Reporter:    collector.ReporterName(r.ContactInfo, r.OrganizationName, config.DefaultLabelLength),
		ReporterOrg: r.OrganizationName, ReporterEmail: r.ContactInfo, ReportID: r.ReportID,
		Begin: r.Begin.Format(time.RFC3339), End: r.End.Format(time.RFC3339), Policies: r.Policies,
	})
}

// failureJSON is the line of a failure report.
type failureJSON struct {
	File   string      `json:"file"`
	Part   string      `json:"part,omitempty"`
	Kind   report.Kind `json:"kind"`
	Domain string      `json:"domain"`
	// Reporter is the reporter label, as on /metrics (it shadows the
	// report's own reporter, its From address, given as reporter_email).
	Reporter      string `json:"reporter"`
	ReporterEmail string `json:"reporter_email"`
	*report.FailureReport
}

func writeFailure(w io.Writer, name string, doc report.Document, lim report.Limits) error {
	r, err := report.ParseFailure(doc.Body, lim)
	if err != nil {
		return err
	}
	return writeLine(w, failureJSON{File: name, Part: doc.Part, Kind: doc.Kind, Domain: r.Domain(),
		Reporter: collector.ReporterName(r.Reporter, "", config.DefaultLabelLength), ReporterEmail: r.Reporter, FailureReport: r})
}

func writeLine(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// spillBuffer holds written bytes in memory up to a bound and in a
// temporary file beyond it, so that output for a huge report does not
// have to fit in memory.
type spillBuffer struct {
	mem  []byte
	max  int
	file *os.File
	w    *bufio.Writer // writes to file in large blocks, not a call per record
	err  error
}

func newSpillBuffer(max int) *spillBuffer { return &spillBuffer{max: max} }

func (b *spillBuffer) Write(p []byte) (int, error) {
	if b.err != nil {
		return 0, b.err
	}
	if b.file == nil && len(b.mem)+len(p) <= b.max {
		b.mem = append(b.mem, p...)
		return len(p), nil
	}
	if b.file == nil {
		if b.file, b.err = os.CreateTemp("", "dmarc-exporter-parse-*"); b.err != nil {
			return 0, b.err
		}
		os.Remove(b.file.Name()) // unlinked: gone when closed
		b.w = bufio.NewWriterSize(b.file, 1<<20)
		if _, b.err = b.w.Write(b.mem); b.err != nil {
			return 0, b.err
		}
		b.mem = nil
	}
	n, err := b.w.Write(p)
	b.err = err
	return n, err
}

// CopyTo copies everything written so far to w.
func (b *spillBuffer) CopyTo(w io.Writer) error {
	if b.err != nil {
		return b.err
	}
	if b.file == nil {
		_, err := w.Write(b.mem)
		return err
	}
	if err := b.w.Flush(); err != nil {
		return err
	}
	if _, err := b.file.Seek(0, io.SeekStart); err != nil {
		return err
	}
	_, err := io.Copy(w, b.file)
	return err
}

func (b *spillBuffer) Close() error {
	if b.file == nil {
		return nil
	}
	return errors.Join(b.file.Close())
}

// writeCounted writes what the exporter counts of each report of a file,
// read as ingest reads it (collector.ReadInput), one JSON object a line.
func writeCounted(w io.Writer, name string, r io.Reader, lim report.Limits, enr *enrich.Enricher) error {
	reports, err := collector.ReadInput(r, lim, config.DefaultLabelLength, enr)
	if err != nil {
		return err
	}
	for _, c := range reports {
		if err := writeLine(w, struct {
			File string `json:"file"`
			collector.Counted
		}{name, c}); err != nil {
			return err
		}
	}
	return nil
}
