package collector

import (
	"bufio"
	"compress/gzip"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"

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
// and process metrics, sources) followed by the Store's. The Store must not
// be registered in reg.
//
// The format is negotiated as Prometheus asks (Accept): the text format
// and OpenMetrics 1.0 are written straight from the Store (WriteText),
// which serves a million series in well under a second; protobuf, asked
// for by a Prometheus with native histograms, goes through client_golang.
// The response is gzip-compressed when the scraper accepts it (Prometheus
// always does), which shrinks a large scrape about twentyfold.
func Handler(reg prometheus.Gatherer, store *Store, log *slog.Logger) http.Handler {
	storeReg := prometheus.NewRegistry()
	storeReg.MustRegister(store)
	offered := []expfmt.Format{expfmt.NewFormat(expfmt.TypeOpenMetrics), expfmt.NewFormat(expfmt.TypeTextPlain),
		expfmt.NewFormat(expfmt.TypeProtoDelim)}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		format := expfmt.NegotiateAccept(r.Header, offered...)
		w.Header().Set("Content-Type", string(format))
		var out io.Writer = w
		if acceptsGzip(r.Header.Get("Accept-Encoding")) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Add("Vary", "Accept-Encoding")
			gz := gzipWriters.Get().(*gzip.Writer)
			gz.Reset(w)
			defer func() {
				gz.Close()
				gzipWriters.Put(gz)
			}()
			out = gz
		}
		bw := bufio.NewWriterSize(out, 64<<10)
		defer bw.Flush()
		fast := format.FormatType() == expfmt.TypeTextPlain || format.FormatType() == expfmt.TypeOpenMetrics
		gatherer := prometheus.Gatherer(prometheus.Gatherers{reg, storeReg})
		if fast {
			gatherer = reg
		}
		mfs, err := gatherer.Gather()
		if err != nil {
			// As promhttp's ContinueOnError: serve what was gathered.
			log.Error("gather metrics", "err", err)
		}
		enc := expfmt.NewEncoder(bw, format)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				log.Debug("encode metrics", "err", err) // the scraper went away
				return
			}
		}
		if fast {
			if err := store.writeText(bw, format.FormatType() == expfmt.TypeOpenMetrics); err != nil {
				log.Debug("write metrics", "err", err)
				return
			}
		}
		if closer, ok := enc.(expfmt.Closer); ok {
			closer.Close() // OpenMetrics' # EOF, after the Store's families
		}
	})
}

// acceptsGzip reports whether an Accept-Encoding header allows gzip.
func acceptsGzip(header string) bool {
	for _, part := range strings.Split(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q, found := strings.CutPrefix(strings.ReplaceAll(params, " ", ""), "q=")
		return !found || strings.Trim(q, "0.") != ""
	}
	return false
}
