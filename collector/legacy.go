package collector

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/dnsmon"
)

// The state file of versions before the archive (state.json, version 1)
// is imported into the archive once, at the first start of this version:
// counters, report identities, read marks, the watchdog's view, failure
// samples, DNS records and their history. The import is one transaction,
// which also records that it happened, so that a crash before the file is
// renamed does not import it twice; the file is then renamed to
// state.json.imported, never deleted.

// stateFileName is the name of the old state file under the storage path.
const stateFileName = "state.json"

// importedMeta is the meta key that records the import.
const importedMeta = "imported_state_file"

type legacyState struct {
	Version int   `json:"version"`
	Created int64 `json:"created"`
	// Counters with their label values, in the order of their family's
	// labels.
	Messages []struct {
		Domain, Reporter, Disposition, DMARC, DKIM, SPF string
		Value                                           uint64
	} `json:"messages"`
	Reporters []struct {
		Domain, Reporter string
		Reports          uint64  `json:"reports"`
		Duplicates       uint64  `json:"duplicates"`
		InvalidRecords   uint64  `json:"invalid_records"`
		LastEnd          int64   `json:"last_end"`
		LastReceived     int64   `json:"last_received"`
		Ends             []int64 `json:"ends"`
		Future, Old      uint64
		Long             uint64
	} `json:"reporters"`
	Overrides []struct {
		Domain, Reporter, Reason string
		Value                    uint64
	} `json:"overrides"`
	Sources []struct {
		Domain, ASN, Org, Country, Name, Class, Disposition, DMARC string
		Value                                                      uint64
	} `json:"sources"`
	Domains  map[string]uint64 `json:"domains"`
	Rejected []struct {
		Source, Reason string
		Value          uint64
	} `json:"rejected"`
	Overflow     map[string]uint64 `json:"overflow"`
	Dedup        map[string]int64  `json:"dedup"`
	Files        map[string]string `json:"files"`
	TLSReporters []legacyKind      `json:"smtp_tls_reporters"`
	TLSSessions  []legacyTLS       `json:"smtp_tls_sessions"`
	TLSFailed    []legacyTLS       `json:"smtp_tls_failed_sessions"`
	FailureRep   []legacyKind      `json:"failure_reporters"`
	Failures     []struct {
		Domain, Reporter string
		AuthFailure      string `json:"auth_failure"`
		DeliveryResult   string `json:"delivery_result"`
		Value            uint64
	} `json:"failures"`
	Samples []Sample `json:"failure_samples"`
	DNS     []struct {
		Domain string
		Name   string `json:"record"`
		dnsmon.Record
		History []dnsmon.Change `json:"history"`
	} `json:"dns"`
	Selectors map[string][]string `json:"dkim_selectors"`
}

type legacyKind struct {
	Domain, Reporter string
	Reports          uint64 `json:"reports"`
	Duplicates       uint64 `json:"duplicates"`
}

type legacyTLS struct {
	Domain, Reporter string
	PolicyType       string `json:"policy_type"`
	Result           string `json:"result"`
	Value            uint64
}

// importStateFile imports dir/state.json into the archive, if there is one,
// and removes the temporary files that earlier versions left behind when
// killed while writing it (state.json.tmp-*): half-written copies, never
// read.
func importStateFile(arc *archive.Archive, dir string, now time.Time, log *slog.Logger) error {
	leftovers, _ := filepath.Glob(filepath.Join(dir, stateFileName+".tmp-*"))
	for _, f := range leftovers {
		if err := os.Remove(f); err == nil {
			log.Info("removed a half-written state file of an earlier version", "file", f)
		}
	}
	path := filepath.Join(dir, stateFileName)
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("state file of an earlier version: %w", err)
	}
	done, err := arc.Meta(importedMeta)
	if err != nil {
		return err
	}
	if done == "" {
		var st legacyState
		if err := json.Unmarshal(data, &st); err != nil {
			return fmt.Errorf("state file %s: %w", path, err)
		}
		if st.Version != 1 {
			return fmt.Errorf("state file %s: version %d, want 1", path, st.Version)
		}
		b := st.batch(now)
		b.Meta = map[string]string{importedMeta: path + " at " + now.UTC().Format(time.RFC3339)}
		if st.Created > 0 {
			b.Meta["created"] = strconv.FormatInt(st.Created, 10)
		}
		if err := arc.Apply(b); err != nil {
			return fmt.Errorf("import state file %s: %w", path, err)
		}
		log.Info("imported the state file of an earlier version into the archive", "file", path, "archive", arc.Path(),
			"series", len(st.Messages)+len(st.Sources), "report_identities", len(st.Dedup), "inputs", len(st.Files))
	}
	if err := os.Rename(path, path+".imported"); err != nil {
		return fmt.Errorf("imported state file %s: %w", path, err)
	}
	return nil
}

// batch is the state as one archive batch.
func (st *legacyState) batch(now time.Time) *archive.Batch {
	t := totals{}
	for _, m := range st.Messages {
		t.add(messagesFamily, m.Value, m.Domain, m.Reporter, m.Disposition, m.DMARC, m.DKIM, m.SPF)
	}
	b := &archive.Batch{}
	for _, r := range st.Reporters {
		t.add(reportsFamily, r.Reports, r.Domain, r.Reporter)
		t.add(duplicatesFamily, r.Duplicates, r.Domain, r.Reporter)
		// Before, a record with a bad source IP was refused like one with a
		// bad count: both were left out of the messages, so "count".
		t.add(invalidRecordsFamily, r.InvalidRecords, r.Domain, r.Reporter, InvalidCount)
		t.add(invalidRecordsFamily, 0, r.Domain, r.Reporter, InvalidSourceIP)
		t.add(anomaliesFamily, r.Future, r.Domain, r.Reporter, "future")
		t.add(anomaliesFamily, r.Old, r.Domain, r.Reporter, "old")
		t.add(anomaliesFamily, r.Long, r.Domain, r.Reporter, "long")
		b.Reporters = append(b.Reporters, archive.Reporter{Domain: r.Domain, Reporter: r.Reporter, LastEnd: r.LastEnd,
			LastReceived: r.LastReceived, Ends: r.Ends})
	}
	for _, o := range st.Overrides {
		t.add(overridesFamily, o.Value, o.Domain, o.Reporter, o.Reason)
	}
	for _, x := range st.Sources {
		t.add(sourcesFamily, x.Value, x.Domain, x.ASN, x.Org, x.Country, x.Name, x.Class, x.Disposition, x.DMARC)
	}
	for d, v := range st.Domains {
		t.add(domainReportsFamily, v, d)
	}
	for _, r := range st.Rejected {
		t.add(rejectedFamily, r.Value, r.Source, r.Reason)
	}
	for label, v := range st.Overflow {
		t.add(overflowFamily, v, label)
	}
	for _, k := range st.TLSReporters {
		t.add(tlsReportsFamily, k.Reports, k.Domain, k.Reporter)
		t.add(tlsDuplicatesFamily, k.Duplicates, k.Domain, k.Reporter)
	}
	for _, x := range st.TLSSessions {
		t.add(tlsSessionsFamily, x.Value, x.Domain, x.Reporter, x.PolicyType, x.Result)
	}
	for _, x := range st.TLSFailed {
		t.add(tlsFailedFamily, x.Value, x.Domain, x.Reporter, x.PolicyType, x.Result)
	}
	for _, k := range st.FailureRep {
		t.add(failureDuplicatesFamily, k.Duplicates, k.Domain, k.Reporter)
	}
	for _, x := range st.Failures {
		t.add(failuresFamily, x.Value, x.Domain, x.Reporter, x.AuthFailure, x.DeliveryResult)
	}
	b.Totals = t.byName()
	for id, first := range st.Dedup {
		b.Identities = append(b.Identities, archive.Identity{ID: id, FirstSeen: time.Unix(first, 0)})
	}
	for path, m := range st.Files {
		mark, outcome, _ := strings.Cut(m, "|")
		b.Inputs = append(b.Inputs, archive.Input{Path: path, Mark: mark, Refused: outcome == "rejected", Read: now})
	}
	for i, smp := range st.Samples {
		if smp.Report == nil {
			continue
		}
		b.Failures = append(b.Failures, &archive.Failure{Identity: "state.json sample " + strconv.Itoa(i), Domain: smp.Domain,
			Reporter: smp.Reporter, AuthFailure: string(smp.Report.AuthFailure), DeliveryResult: string(smp.Report.DeliveryResult),
			Source: smp.Source, Received: smp.Ingested, Redacted: smp.Report})
	}
	for _, d := range st.DNS {
		state, _ := json.Marshal(d.Record) // strings, numbers and maps of them
		b.DNS = append(b.DNS, archive.DNSRecord{Domain: d.Domain, Record: d.Name, State: state})
		for _, h := range d.History {
			b.DNSLog = append(b.DNSLog, archive.DNSChange{Domain: d.Domain, Record: d.Name, Time: h.Time, Texts: h.Texts})
		}
	}
	for d, sels := range st.Selectors {
		for _, sel := range sels {
			b.Selectors = append(b.Selectors, archive.Selector{Domain: d, Selector: sel})
		}
	}
	return b
}
