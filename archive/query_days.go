package archive

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// RecordGroup is the messages of one report's records that share their
// results and source class, with the report's range: what the
// report-time series are made of.
type RecordGroup struct {
	Report             int64
	Domain, Reporter   string
	Begin, End         time.Time
	Disposition, DMARC string
	DKIM, SPF, Class   string
	Messages           uint64
}

// GroupFilter selects the reports of RecordGroups: those whose range
// overlaps [From, Until), and those numbered in (AfterID, UpToID]; zero
// fields select everything.
type GroupFilter struct {
	From, Until     time.Time
	AfterID, UpToID int64
}

// RecordGroups calls fn with the record groups of the reports f selects,
// a report's groups one after another, in the order of the reports'
// numbers. Records not counted (a bad count) are left out.
func (a *Archive) RecordGroups(ctx context.Context, f GroupFilter, fn func(RecordGroup) error) error {
	conds := []string{"r.problem NOT LIKE 'count%'"}
	var args []any
	if !f.From.IsZero() {
		conds = append(conds, "a.end_time > ?")
		args = append(args, f.From.Unix())
	}
	if !f.Until.IsZero() {
		conds = append(conds, "a.begin_time < ?")
		args = append(args, f.Until.Unix())
	}
	if f.AfterID != 0 {
		conds = append(conds, "a.id > ?")
		args = append(args, f.AfterID)
	}
	if f.UpToID != 0 {
		conds = append(conds, "a.id <= ?")
		args = append(args, f.UpToID)
	}
	rows, err := a.h().r.QueryContext(ctx, `SELECT a.id, a.domain, a.reporter, a.begin_time, a.end_time, r.disposition, r.dmarc,
		r.dkim, r.spf, r.source_class, sum(r.count) FROM aggregate_reports a JOIN aggregate_records r ON r.report = a.id
		WHERE `+strings.Join(conds, " AND ")+`
		GROUP BY a.id, r.disposition, r.dmarc, r.dkim, r.spf, r.source_class ORDER BY a.id`, args...)
	if err != nil {
		return fmt.Errorf("archive: record groups: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var g RecordGroup
		var begin, end int64
		if err := rows.Scan(&g.Report, &g.Domain, &g.Reporter, &begin, &end, &g.Disposition, &g.DMARC, &g.DKIM, &g.SPF,
			&g.Class, &g.Messages); err != nil {
			return fmt.Errorf("archive: record groups: %w", err)
		}
		g.Begin, g.End = time.Unix(begin, 0).UTC(), time.Unix(end, 0).UTC()
		if err := fn(g); err != nil {
			return err
		}
	}
	return rows.Err()
}

// LastReportID is the number of the newest aggregate report, 0 when there
// is none.
func (a *Archive) LastReportID(ctx context.Context) (int64, error) {
	var id int64
	err := a.h().r.QueryRowContext(ctx, "SELECT coalesce(max(id), 0) FROM aggregate_reports").Scan(&id)
	return id, err
}
