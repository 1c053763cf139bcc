package archive

import (
	"context"
	"fmt"
	"time"
)

// TakeLease takes or renews the lease of name for holder until now+ttl,
// when it is free, expired, or holder's already, and reports whether
// holder has it. Exporters sharing a PostgreSQL archive take one per
// source: whoever holds it reads the source.
func (a *Archive) TakeLease(ctx context.Context, name, holder string, now time.Time, ttl time.Duration) (bool, error) {
	res, err := a.h().w.ExecContext(ctx, `INSERT INTO leases (name, holder, expires) VALUES (?1, ?2, ?3)
		ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, expires = excluded.expires
		WHERE leases.holder = excluded.holder OR leases.expires < ?4`,
		name, holder, now.Add(ttl).UnixMilli(), now.UnixMilli())
	if err != nil {
		return false, fmt.Errorf("archive: lease %s: %w", name, err)
	}
	n, err := res.RowsAffected()
	return n == 1, err
}

// DropLease gives a lease up, if holder has it.
func (a *Archive) DropLease(ctx context.Context, name, holder string) error {
	_, err := a.h().w.ExecContext(ctx, "DELETE FROM leases WHERE name = ? AND holder = ?", name, holder)
	return err
}
