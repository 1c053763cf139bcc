package collector

import (
	"bytes"
	"database/sql"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // to read the database's size

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/config"
	"github.com/dmarc-exporter/dmarc-exporter/internal/testenv"
	"github.com/dmarc-exporter/dmarc-exporter/report"
)

// BenchmarkIngestShards ingests DMARC_BENCH_REPORTS (default 20,000)
// real-shaped reports through two shards, two stores on their own
// connections to one PostgreSQL archive (fsync on), each reading half
// the files as the directory source does; compare with
// BenchmarkIngestArchive on SQLite:
//
//	DMARC_BENCH_REPORTS=100000 go test ./collector -run '^$' -bench BenchmarkIngestShards -benchtime 1x -timeout 1h
func BenchmarkIngestShards(b *testing.B) {
	n := 20_000
	if v := os.Getenv("DMARC_BENCH_REPORTS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	files := genBenchFiles(n)
	var took time.Duration
	var dbBytes int64
	for b.Loop() {
		b.StopTimer()
		pg := testenv.StartPostgresDurable(b)
		cfg := config.Default()
		var shards []*Store
		for range 2 {
			arc, err := archive.OpenURL(pg.URL)
			if err != nil {
				b.Fatal(err)
			}
			defer arc.Close()
			s, err := Open(Options{Archive: arc, Dir: b.TempDir(), Limits: cfg.Limits, DedupRetention: time.Duration(cfg.State.DedupRetention),
				ReportLimits: report.DefaultLimits(), MaxRawBytes: cfg.Archive.RawLimit(), Now: func() time.Time { return testNow }})
			if err != nil {
				b.Fatal(err)
			}
			shards = append(shards, s)
		}
		db, err := sql.Open("pgx", pg.URL)
		if err != nil {
			b.Fatal(err)
		}
		var before int64
		db.QueryRow("SELECT pg_database_size(current_database())").Scan(&before)
		b.StartTimer()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 2)
		for i, s := range shards {
			wg.Go(func() {
				for j := i; j < len(files); j += 2 {
					f := files[j]
					if seen, _ := s.Seen(f.path, f.mark); seen {
						continue
					}
					if err := s.IngestFile("google", f.path, f.mark, bytes.NewReader(f.data)); err != nil {
						errs <- err
						return
					}
					if (j/2+1)%benchCommitEvery == 0 {
						if err := s.Commit(); err != nil {
							errs <- err
							return
						}
					}
				}
				if err := s.Commit(); err != nil {
					errs <- err
				}
			})
		}
		wg.Wait()
		took += time.Since(start)
		b.StopTimer()
		close(errs)
		for err := range errs {
			b.Fatal(err)
		}
		if err := shards[0].Refresh(); err != nil {
			b.Fatal(err)
		}
		var reports uint64
		for _, v := range shards[0].live[reportsFamily] {
			reports += v
		}
		if reports != uint64(n) {
			b.Fatalf("the shards counted %d reports, want %d", reports, n)
		}
		var after int64
		db.QueryRow("SELECT pg_database_size(current_database())").Scan(&after)
		dbBytes = after - before
		db.Close()
		b.StartTimer()
	}
	b.ReportMetric(float64(n*b.N)/took.Seconds(), "reports/s")
	b.ReportMetric(float64(took.Microseconds())/float64(n*b.N), "µs/report")
	b.ReportMetric(float64(dbBytes)/float64(n*benchRecords), "db-bytes/record")
}
