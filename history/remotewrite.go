package history

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/exp/api/remote"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/dmarc-exporter/dmarc-exporter/archive"
	"github.com/dmarc-exporter/dmarc-exporter/config"
)

// Pusher pushes the report-time series of new reports to a remote-write
// receiver (Prometheus with --web.enable-remote-write-receiver, Mimir,
// Thanos Receive), as Prometheus remote write 1.0.
//
// Each push takes the reports archived since the last one: the numbers
// in (watermark, newest]. It is written down in the archive before it is
// sent, with its sequence number, and the watermark moves once every
// sample is sent. A restart redoes a push it finds written down: the same
// reports give the same samples at the same timestamps, which the
// receiver keeps once. So a restart resends nothing already sent and
// loses nothing.
//
// A push's samples sit at noon UTC of their day plus the push's sequence
// number in milliseconds: a later push with late reports for a day adds
// a sample beside the earlier one, and sum_over_time(...[1d]) at the next
// midnight gives the day's total.
type Pusher struct {
	arc       *archive.Archive
	api       *remote.API
	transport *authTransport
	key       string // the meta key prefix of this receiver's state
	interval  time.Duration
	maxAge    time.Duration
	now       func() time.Time
	log       *slog.Logger
	m         *PushMetrics
}

// batchSamples bounds the samples of one request.
const batchSamples = 2000

// pending is a push written down before it is sent.
type pending struct {
	After, UpTo int64 // report numbers (After, UpTo]
	Seq         int64
	// Created is when the push was planned (Unix milliseconds): the
	// "now" of its samples, so that a redo computes the same ones.
	Created int64
}

// NewPusher returns a pusher to cfg's receiver.
func NewPusher(arc *archive.Archive, cfg config.RemoteWrite, m *PushMetrics, log *slog.Logger) (*Pusher, error) {
	transport := &authTransport{cfg: cfg, next: http.DefaultTransport}
	client := &http.Client{Timeout: time.Minute, Transport: transport}
	api, err := remote.NewAPI(cfg.URL, remote.WithAPIHTTPClient(client), remote.WithAPIPath(""),
		remote.WithAPIBackoff(remote.BackoffConfig{Min: time.Second, Max: 2 * time.Minute}), // retried until it works or the exporter stops
		remote.WithAPILogger(log.With("remote_write", cfg.URL)))
	if err != nil {
		return nil, fmt.Errorf("remote_write.url: %w", err)
	}
	// The receiver's state is kept under its URL: another receiver starts
	// from the beginning. A trailing slash or the case of the host does
	// not make another receiver.
	sum := sha256.Sum256([]byte(strings.ToLower(strings.TrimSuffix(cfg.URL, "/"))))
	return &Pusher{arc: arc, api: api, transport: transport, key: fmt.Sprintf("remote_write.%x.", sum[:6]),
		interval: time.Duration(cfg.Interval), maxAge: time.Duration(cfg.MaxSampleAge), now: time.Now,
		log: log.With("remote_write", cfg.URL), m: m}, nil
}

// authTransport adds the basic auth and headers of the configuration;
// the password file is read at each request, so that a rotation needs no
// restart.
type authTransport struct {
	cfg  config.RemoteWrite
	next http.RoundTripper
	// status is the HTTP status of the last answer (the remote API's
	// errors give it only in words); requests are sent one at a time.
	status int
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	req = req.Clone(req.Context())
	for k, v := range t.cfg.Headers {
		req.Header.Set(k, v)
	}
	if a := t.cfg.BasicAuth; a != nil {
		pw, err := os.ReadFile(a.PasswordFile)
		if err != nil {
			return nil, fmt.Errorf("remote_write.basic_auth.password_file: %w", err)
		}
		req.SetBasicAuth(a.Username, strings.TrimSpace(string(pw)))
	}
	t.status = 0
	resp, err := t.next.RoundTrip(req)
	if err == nil {
		t.status = resp.StatusCode
	}
	return resp, err
}

// Run pushes at start and every interval until ctx is done.
func (p *Pusher) Run(ctx context.Context) {
	for {
		if err := p.Push(ctx); err != nil && ctx.Err() == nil {
			p.log.Error("remote write", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(p.interval):
		}
	}
}

// Push sends what was archived since the last push: first a push written
// down and not finished, then the reports after the watermark.
func (p *Pusher) Push(ctx context.Context) error {
	for {
		job, err := p.next(ctx)
		if err != nil || job == nil {
			return err
		}
		if err := p.send(ctx, job); err != nil {
			return err
		}
		if err := p.arc.Apply(&archive.Batch{Meta: map[string]string{
			p.key + "watermark": fmt.Sprint(job.UpTo), p.key + "pending": "", p.key + "seq": fmt.Sprint(job.Seq)}}); err != nil {
			return fmt.Errorf("save the watermark: %w", err)
		}
		p.m.watermark.Set(float64(job.UpTo))
		p.m.lastSuccess.SetToCurrentTime()
	}
}

// next is the push to do: the one written down, else a new one from the
// watermark to the newest report, written down now; nil when none.
func (p *Pusher) next(ctx context.Context) (*pending, error) {
	if s, err := p.arc.Meta(p.key + "pending"); err != nil {
		return nil, err
	} else if s != "" {
		job := &pending{}
		if err := json.Unmarshal([]byte(s), job); err != nil {
			return nil, fmt.Errorf("the push written down: %w", err)
		}
		p.log.Info("remote write: redoing the push a stop interrupted", "reports_after", job.After, "up_to", job.UpTo)
		return job, nil
	}
	var mark, seq int64
	if s, err := p.arc.Meta(p.key + "watermark"); err != nil {
		return nil, err
	} else if s != "" {
		fmt.Sscan(s, &mark)
	}
	if s, err := p.arc.Meta(p.key + "seq"); err != nil {
		return nil, err
	} else if s != "" {
		fmt.Sscan(s, &seq)
	}
	p.m.watermark.Set(float64(mark))
	newest, err := p.arc.LastReportID(ctx)
	if err != nil || newest <= mark {
		return nil, err
	}
	job := &pending{After: mark, UpTo: newest, Seq: seq + 1, Created: p.now().UnixMilli()}
	data, _ := json.Marshal(job)
	if err := p.arc.Apply(&archive.Batch{Meta: map[string]string{p.key + "pending": string(data)}}); err != nil {
		return nil, fmt.Errorf("write the push down: %w", err)
	}
	return job, nil
}

// send computes a push's samples and sends them in batches. Samples
// older than the receiver takes, or not in the past yet, are skipped and
// said so. A batch the receiver refuses as bad (400) is logged and
// skipped, since sending it again changes nothing; any other failure
// (a wrong URL or password, the receiver gone) ends the push, which
// stays written down and is tried again.
func (p *Pusher) send(ctx context.Context, job *pending) error {
	created := time.UnixMilli(job.Created)
	if job.Created == 0 { // written down by a build before Created
		created = p.now()
	}
	series, err := FromArchive(ctx, p.arc, archive.GroupFilter{AfterID: job.After, UpToID: job.UpTo}, time.Time{}, time.Time{})
	if err != nil {
		return err
	}
	// A sample must be at least an hour inside the receiver's window,
	// and before the push was planned (receivers refuse the future).
	oldest := created.Add(-p.maxAge + time.Hour)
	offset := time.Duration(job.Seq%(12*3600*1000)) * time.Millisecond
	var batch writeRequest
	var tooOld, future int
	var tooOldFrom, tooOldTo time.Time
	flush := func() error {
		if batch.samples == 0 {
			return nil
		}
		n := batch.samples
		_, err := p.api.Write(ctx, remote.WriteV1MessageType, &batch,
			remote.WithWriteRetryCallback(func(error) { p.m.retries.Inc() })) // the API logs each retry
		batch = writeRequest{}
		switch {
		case err == nil:
			p.m.samples.WithLabelValues("sent").Add(float64(n))
		case ctx.Err() != nil:
			return ctx.Err()
		case p.transport.status == http.StatusBadRequest:
			p.m.samples.WithLabelValues("rejected").Add(float64(n))
			p.log.Error("remote write: the receiver refused samples as bad; they are skipped", "samples", n, "err", err)
		default:
			p.m.failures.Inc()
			return fmt.Errorf("the push stays written down and is tried again: %w", err)
		}
		return nil
	}
	for _, f := range Families {
		err := series.Each(f.Name, func(labels []string, samples []Sample) error {
			var keep []Sample
			for _, s := range samples {
				s.At = Timestamp(s.Day).Add(offset)
				if !s.At.Before(created) {
					// Today's sample before its noon: just before the push
					// was planned, still in its day; a day yet to come: none.
					s.At = created.Add(-time.Millisecond)
					if s.At.Before(s.Day) {
						future++
						continue
					}
				}
				if s.At.Before(oldest) {
					tooOld++
					if tooOldFrom.IsZero() || s.Day.Before(tooOldFrom) {
						tooOldFrom = s.Day
					}
					tooOldTo = maxTime(tooOldTo, s.Day)
					continue
				}
				keep = append(keep, s)
			}
			if len(keep) == 0 {
				return nil
			}
			batch.add(f, labels, keep)
			if batch.samples >= batchSamples {
				return flush()
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if future > 0 {
		p.m.samples.WithLabelValues("future").Add(float64(future))
		p.log.Warn("remote write: samples of days yet to come skipped (a report's range reaches into the future)", "samples", future)
	}
	if tooOld > 0 {
		p.m.samples.WithLabelValues("too_old").Add(float64(tooOld))
		p.log.Warn("remote write: samples older than remote_write.max_sample_age skipped; load them with `dmarc-exporter export openmetrics` and `promtool tsdb create-blocks-from openmetrics`",
			"samples", tooOld, "since", tooOldFrom.Format(time.DateOnly), "until", tooOldTo.Format(time.DateOnly),
			"max_sample_age", p.maxAge)
	}
	return nil
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// writeRequest is a remote write 1.0 WriteRequest (prometheus.WriteRequest
// of prompb), encoded with protowire as it is built: timeseries = 1;
// a TimeSeries has labels = 1 (name = 1, value = 2) and samples = 2
// (value = 1, a double; timestamp = 2, milliseconds).
type writeRequest struct {
	buf     []byte
	samples int
}

func (w *writeRequest) add(f Family, labels []string, samples []Sample) {
	var ts []byte
	label := func(name, value string) {
		var l []byte
		l = protowire.AppendTag(l, 1, protowire.BytesType)
		l = protowire.AppendString(l, name)
		l = protowire.AppendTag(l, 2, protowire.BytesType)
		l = protowire.AppendString(l, value)
		ts = protowire.AppendTag(ts, 1, protowire.BytesType)
		ts = protowire.AppendBytes(ts, l)
	}
	// Labels sorted by name, as the receiver wants them: __name__ first.
	names := append([]string{"__name__"}, f.Labels...)
	values := append([]string{f.Name}, labels...)
	for _, i := range sortedIndex(names) {
		label(names[i], values[i])
	}
	for _, s := range samples {
		var sm []byte
		sm = protowire.AppendTag(sm, 1, protowire.Fixed64Type)
		sm = protowire.AppendFixed64(sm, math.Float64bits(float64(s.Value)))
		sm = protowire.AppendTag(sm, 2, protowire.VarintType)
		sm = protowire.AppendVarint(sm, uint64(s.At.UnixMilli()))
		ts = protowire.AppendTag(ts, 2, protowire.BytesType)
		ts = protowire.AppendBytes(ts, sm)
	}
	w.buf = protowire.AppendTag(w.buf, 1, protowire.BytesType)
	w.buf = protowire.AppendBytes(w.buf, ts)
	w.samples += len(samples)
}

// Size and MarshalToSizedBuffer make writeRequest a message the remote
// API encodes (its gogo-protobuf path).
func (w *writeRequest) Size() int { return len(w.buf) }

func (w *writeRequest) MarshalToSizedBuffer(b []byte) (int, error) {
	if len(b) < len(w.buf) {
		return 0, errors.New("buffer too small")
	}
	return copy(b[len(b)-len(w.buf):], w.buf), nil
}

// sortedIndex is the order of names, sorted.
func sortedIndex(names []string) []int {
	idx := make([]int, len(names))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return strings.Compare(names[a], names[b]) })
	return idx
}

// PushMetrics are the pusher's metrics.
type PushMetrics struct {
	samples     *prometheus.CounterVec
	retries     prometheus.Counter
	failures    prometheus.Counter
	watermark   prometheus.Gauge
	lastSuccess prometheus.Gauge
}

// NewPushMetrics creates the pusher's metrics; Register serves them.
func NewPushMetrics() *PushMetrics {
	m := &PushMetrics{
		samples: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "dmarc_exporter_remote_write_samples_total",
			Help: "Report-time samples pushed by remote write since start, by outcome: sent, too_old (older than remote_write.max_sample_age: skipped, export openmetrics loads them), future (of a day yet to come: skipped), rejected (refused by the receiver as bad).",
		}, []string{"outcome"}),
		retries: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dmarc_exporter_remote_write_retries_total",
			Help: "Remote write requests retried (the receiver down or failing) since start.",
		}),
		failures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "dmarc_exporter_remote_write_failures_total",
			Help: "Pushes that failed (the receiver refused the request, other than as bad samples, or could not be reached after retries) and stay to be tried again.",
		}),
		watermark: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dmarc_exporter_remote_write_watermark_report",
			Help: "The number of the newest archived report whose samples were pushed.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "dmarc_exporter_remote_write_last_push_timestamp_seconds",
			Help: "When the last push completed.",
		}),
	}
	for _, o := range []string{"sent", "too_old", "future", "rejected"} {
		m.samples.WithLabelValues(o)
	}
	return m
}

// Register serves the metrics through reg.
func (m *PushMetrics) Register(reg prometheus.Registerer) {
	reg.MustRegister(m.samples, m.retries, m.failures, m.watermark, m.lastSuccess)
}
