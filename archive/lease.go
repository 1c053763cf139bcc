package archive

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// TakeLease takes or renews the lease of name for holder until now+ttl,
// when it is free, expired, or holder's already, and reports whether
// holder has it. Exporters sharing a PostgreSQL archive take one per
// source: whoever holds it reads the source.
//
// On PostgreSQL "now" is the database's clock, one for every exporter
// whatever their own clocks say, and the lease goes through the readers'
// connections: it is renewed while the writer is busy with a large
// report, or waits for another exporter's transaction.
func (a *Archive) TakeLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	var db *sql.DB
	var res sql.Result
	var err error
	if a.postgres {
		db = a.h().r
		res, err = db.ExecContext(ctx, `INSERT INTO leases (name, holder, expires)
			VALUES (?1, ?2, CAST(extract(epoch from clock_timestamp()) * 1000 AS BIGINT) + ?3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
			WHERE leases.holder = excluded.holder OR leases.expires < CAST(extract(epoch from clock_timestamp()) * 1000 AS BIGINT)`,
			name, holder, ttl.Milliseconds())
	} else {
		db = a.h().w
		res, err = db.ExecContext(ctx, `INSERT INTO leases (name, holder, expires) VALUES (?1, ?2, ?3)
			ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
			WHERE leases.holder = excluded.holder OR leases.expires < ?4`,
			name, holder, now.Add(ttl).UnixMilli(), now.UnixMilli())
	}
	if err != nil {
		return false, fmt.Errorf("archive: lease %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// DropLease gives a lease up, if holder has it.
func (a *Archive) DropLease(ctx context.Context, name, holder string) error {
	db := a.h().w
	if a.postgres {
		db = a.h().r
	}
	_, err := db.ExecContext(ctx, "DELETE FROM leases WHERE name = ? AND holder = ?", name, holder)
	return err
}
