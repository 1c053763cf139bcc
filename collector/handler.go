package collector

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// SamplesHandler serves the kept failure report samples as JSON, newest
// first.
func SamplesHandler(store *Store) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		samples, err := store.Samples()
		if err != nil {
			http.Error(w, "cannot read the archive", http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		enc.Encode(samples)
	})
}

// Handler serves /metrics: the registry's metrics (the exporter's own, Go
// and process metrics, sources) followed by the Store's, written directly
// (WriteText). The Store must not be registered in reg. The response is
// always the text format, which every Prometheus version accepts.
func Handler(reg prometheus.Gatherer, store *Store, log *slog.Logger) http.Handler {
	format := expfmt.NewFormat(expfmt.TypeTextPlain)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mfs, err := reg.Gather()
		if err != nil {
			// As promhttp's ContinueOnError: serve what was gathered.
			log.Error("gather metrics", "err", err)
		}
		w.Header().Set("Content-Type", string(format))
		bw := bufio.NewWriterSize(w, 64<<10)
		enc := expfmt.NewEncoder(bw, format)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				log.Error("encode metrics", "err", err)
				return
			}
		}
		if err := store.WriteText(bw); err != nil {
			log.Debug("write metrics", "err", err) // the scraper went away
			return
		}
		bw.Flush()
	})
}
