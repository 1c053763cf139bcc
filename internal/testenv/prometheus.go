package testenv

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// Prometheus is a real Prometheus (Debian's prometheus package) run by a
// test on 127.0.0.1.
type Prometheus struct {
	Addr string
	cmd  *exec.Cmd
	logs *SyncBuffer
}

// StartPrometheus starts Prometheus with these flags (besides its listen
// address) and waits until it is ready; the test's cleanup stops it by
// its PID, and a failed test prints its log.
func StartPrometheus(t testing.TB, flags ...string) *Prometheus {
	t.Helper()
	return StartPrometheusAt(t, FreeAddr(t), flags...)
}

// StartPrometheusAt is StartPrometheus on an address chosen before (a
// client configured with it while nothing listens there yet).
func StartPrometheusAt(t testing.TB, addr string, flags ...string) *Prometheus {
	t.Helper()
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is not installed (Debian package prometheus; make deps installs it)")
	}
	p := &Prometheus{Addr: addr, logs: &SyncBuffer{}}
	p.cmd = exec.Command(bin, append(flags, "--web.listen-address="+p.Addr)...)
	p.cmd.Stdout, p.cmd.Stderr = p.logs, p.logs
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", p.logs)
		}
	})
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		resp, err := http.Get("http://" + p.Addr + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("prometheus did not become ready: %v\n%s", err, p.logs)
		}
	}
}

// Stop kills Prometheus and waits for it.
func (p *Prometheus) Stop() {
	if p.cmd.ProcessState == nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	}
}

// Query evaluates an instant PromQL query at a time and returns each
// series' labels and value.
func (p *Prometheus) Query(expr string, at time.Time) ([]QueryResult, error) {
	v := url.Values{"query": {expr}, "time": {strconv.FormatInt(at.Unix(), 10)}}
	resp, err := http.Get("http://" + p.Addr + "/api/v1/query?" + v.Encode())
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var r struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			Result []struct {
				Metric map[string]string `json:"metric"`
				Value  [2]any            `json:"value"`
			} `json:"result"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return nil, err
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: %s", expr, r.Error)
	}
	var out []QueryResult
	for _, s := range r.Data.Result {
		str, _ := s.Value[1].(string)
		f, err := strconv.ParseFloat(str, 64)
		if err != nil {
			return nil, fmt.Errorf("query %s: value %v", expr, s.Value[1])
		}
		out = append(out, QueryResult{Labels: s.Metric, Value: f})
	}
	return out, nil
}

// QueryResult is a series of a query's answer.
type QueryResult struct {
	Labels map[string]string
	Value  float64
}
