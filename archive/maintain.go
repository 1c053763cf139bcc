package archive

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// Retention: reports whose date range ended before a cutoff are deleted
// with their records, a few hundred per transaction, so that a large
// deletion never holds the writer for long. The counters (totals) are
// not touched: they never go down. Report identities have their own
// retention (ExpireIdentities).

// expireBatch is how many reports one retention transaction deletes.
const expireBatch = 500

// Expire deletes the aggregate and SMTP TLS reports whose date range ended
// before cutoff and that were received before it, and the failure reports
// received before it, and returns how many reports it deleted. A backfill
// of old reports stays for the retention from when it was read.
func (a *Archive) Expire(ctx context.Context, cutoff time.Time) (int64, error) {
	var total int64
	for _, q := range []string{
		"DELETE FROM aggregate_reports WHERE id IN (SELECT id FROM aggregate_reports WHERE end_time < ?1 AND received < ?1 LIMIT ?2)",
		"DELETE FROM tls_reports WHERE id IN (SELECT id FROM tls_reports WHERE end_time < ?1 AND received < ?1 LIMIT ?2)",
		"DELETE FROM failure_reports WHERE id IN (SELECT id FROM failure_reports WHERE received < ?1 LIMIT ?2)",
	} {
		for {
			if err := ctx.Err(); err != nil {
				return total, err
			}
			res, err := a.h().w.ExecContext(ctx, q, cutoff.Unix(), expireBatch)
			if err != nil {
				return total, fmt.Errorf("archive: retention: %w", err)
			}
			n, _ := res.RowsAffected()
			total += n
			if n < expireBatch {
				break
			}
		}
	}
	return total, nil
}

// Stats describe an archive for operators.
type Stats struct {
	Path          string
	Bytes         int64 // the database and its write-ahead log
	SchemaVersion int
	Rows          map[string]int64 // by table
	// OldestReport and NewestReport are the ends of the date ranges of the
	// oldest and newest aggregate reports; zero when there is none.
	OldestReport, NewestReport time.Time
}

// Stats counts the rows of every table and the size on disk.
func (a *Archive) Stats(ctx context.Context) (*Stats, error) {
	st := &Stats{Path: a.path, Rows: map[string]int64{}}
	if a.postgres {
		if err := a.h().r.QueryRowContext(ctx, "SELECT pg_database_size(current_database())").Scan(&st.Bytes); err != nil {
			return nil, err
		}
	} else {
		for _, suffix := range []string{"", "-wal"} {
			if fi, err := os.Stat(a.path + suffix); err == nil {
				st.Bytes += fi.Size()
			}
		}
	}
	var err error
	if st.SchemaVersion, err = a.schemaVersion(ctx); err != nil {
		return nil, err
	}
	tables, err := a.Tables()
	if err != nil {
		return nil, err
	}
	for _, t := range tables {
		var n int64
		// Table names come from sqlite_schema, not from a user.
		if err := a.h().r.QueryRowContext(ctx, `SELECT count(*) FROM "`+t+`"`).Scan(&n); err != nil {
			return nil, fmt.Errorf("count %s: %w", t, err)
		}
		st.Rows[t] = n
	}
	var oldest, newest sql.NullInt64
	if err := a.h().r.QueryRowContext(ctx, "SELECT min(end_time), max(end_time) FROM aggregate_reports").Scan(&oldest, &newest); err != nil {
		return nil, err
	}
	if oldest.Valid {
		st.OldestReport, st.NewestReport = time.Unix(oldest.Int64, 0).UTC(), time.Unix(newest.Int64, 0).UTC()
	}
	return st, nil
}

// Check runs SQLite's integrity and foreign key checks and returns what
// they found, nil when the archive is sound. PostgreSQL keeps its own
// integrity: there it checks that the database answers.
func (a *Archive) Check(ctx context.Context) error {
	if a.postgres {
		return a.h().r.PingContext(ctx)
	}
	var problems []string
	rows, err := a.h().r.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return err
	}
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			rows.Close()
			return err
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	rows.Close()
	rows, err = a.h().r.QueryContext(ctx, "PRAGMA foreign_key_check")
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var table, parent string
		var rowid sql.NullInt64
		var fk int
		if err := rows.Scan(&table, &rowid, &parent, &fk); err != nil {
			return err
		}
		problems = append(problems, fmt.Sprintf("%s row %d refers to a missing %s row", table, rowid.Int64, parent))
	}
	if len(problems) > 0 {
		return errors.New(strings.Join(problems, "\n"))
	}
	return rows.Err()
}

// Vacuum rebuilds the database file, giving back the space of deleted
// rows. It holds the writer for as long as it takes.
func (a *Archive) Vacuum(ctx context.Context) error {
	if a.postgres {
		_, err := a.h().w.ExecContext(ctx, "VACUUM")
		return err
	}
	if _, err := a.h().w.ExecContext(ctx, "VACUUM"); err != nil {
		return fmt.Errorf("archive: vacuum: %w", err)
	}
	_, err := a.h().w.ExecContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)")
	return err
}
