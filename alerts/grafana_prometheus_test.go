package alerts

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

// risingExposition serves the exporter's fixture exposition (../testdata/exposition.prom, kept by
// the root package's TestExposition) with deployments happening: at every scrape each failed
// counter and each passed duration count (above every bucket but +Inf: a slow deployment)
// grows by one, so that the failed and burn-rate conditions have increases to see.
func risingExposition(t testing.TB) http.Handler {
	t.Helper()
	fixture, err := os.ReadFile("../testdata/exposition.prom")
	if err != nil {
		t.Fatalf("the exporter's fixture exposition is needed: %v", err)
	}
	return rising(fixture)
}

// rising serves body with the failed counters and passed duration counts growing by one at
// every scrape.
func rising(fixture []byte) http.Handler {
	var scrapes atomic.Int64
	rises := func(line string) bool {
		switch {
		case strings.HasPrefix(line, "buildkite_deployments_total{"):
			return strings.Contains(line, `state="failed"`)
		case strings.HasPrefix(line, "buildkite_deployment_duration_seconds_count{"):
			return strings.Contains(line, `state="passed"`)
		case strings.HasPrefix(line, "buildkite_deployment_duration_seconds_bucket{"):
			return strings.Contains(line, `state="passed"`) && strings.Contains(line, `le="+Inf"`)
		}
		return false
	}
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		n := float64(scrapes.Add(1))
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		sc := bufio.NewScanner(bytes.NewReader(fixture))
		for sc.Scan() {
			line := sc.Text()
			if rises(line) {
				i := strings.LastIndexByte(line, ' ')
				v, err := strconv.ParseFloat(line[i+1:], 64)
				if err == nil {
					line = line[:i+1] + strconv.FormatFloat(v+n, 'f', -1, 64)
				}
			}
			fmt.Fprintln(w, line)
		}
	})
}

type promInstant struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
		} `json:"result"`
	} `json:"data"`
}

func promQuery(ctx context.Context, base, expr string) (promInstant, error) {
	var r promInstant
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/v1/query?query="+url.QueryEscape(expr), nil)
	if err != nil {
		return r, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&r); err != nil {
		return r, fmt.Errorf("HTTP %d: %w", resp.StatusCode, err)
	}
	if r.Status != "success" {
		return r, fmt.Errorf("%s: %s", r.ErrorType, r.Error)
	}
	return r, nil
}

// TestGrafanaQueriesInPrometheus stands in for Grafana's evaluation, which sends each rule's
// query to the Prometheus data source as an instant query: Debian's Prometheus 2.42 scrapes the
// fixture exposition (with deployments happening) every second, and every rule's query of the
// default render must parse, evaluate to a vector and return series of its own component only.
// A second render with hair-trigger thresholds (any environment counts, stuck after 1ms, one
// deployment is enough) must fire every alert of the set for some component, and each
// exactly for the components the fixture has the condition for.
func TestGrafanaQueriesInPrometheus(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Prometheus")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	base := startPrometheus(ctx, t, risingExposition(t), 6)

	comps := fixtureGrafanaComponents()
	// fired runs every rule of a render and returns, per alert, the components it fired for.
	fired := func(p Params) map[string][]string {
		f, err := Grafana(p, GrafanaOptions{DatasourceUID: "prometheus"}, comps)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string][]string{}
		for _, g := range f.Groups {
			for _, rule := range g.Rules {
				comp := rule.Labels["component"]
				alert := strings.Fields(rule.Title)[0]
				q := rule.Data[0].Model.Expr
				r, err := promQuery(ctx, base, q)
				if err != nil {
					t.Errorf("%s: %v\n\tquery: %s", rule.Title, err, q)
					continue
				}
				if r.Data.ResultType != "vector" {
					t.Errorf("%s: a %s, not a vector (Grafana's threshold needs series)", rule.Title, r.Data.ResultType)
				}
				for _, s := range r.Data.Result {
					if s.Metric["component"] != comp {
						t.Errorf("%s: a series of component %q: %v", rule.Title, s.Metric["component"], s.Metric)
					}
				}
				if len(r.Data.Result) > 0 {
					out[alert] = append(out[alert], comp)
				}
			}
		}
		return out
	}
	def := fired(DefaultParams())
	t.Logf("default thresholds fire: %v", def)

	hair := DefaultParams()
	hair.ProductionEnvironments, hair.StuckAfter, hair.MinDeployments = ".+", time.Millisecond, 1
	// The counters grow at every 1s scrape, so each window holds a few deployments only: the
	// burn rates are far above any factor, the guard needs one.
	var got map[string][]string
	deadline := time.Now().Add(20 * time.Second)
	for {
		got = fired(hair)
		if len(got) == len(GrafanaAlertNames()) || time.Now().After(deadline) || t.Failed() {
			break
		}
		time.Sleep(time.Second)
	}
	// What the fixture has: api fails in staging; worker has a deployment running; every
	// component with failed counters fails now (the rising exposition), and every component
	// with passed durations is slow.
	want := map[string][]string{
		"BuildkiteDeploymentFailing": {"api"},
		"BuildkiteDeploymentStuck":   {"worker"},
	}
	for alert, comps := range want {
		if !slices.Equal(got[alert], comps) {
			t.Errorf("%s fires for %v, want %v", alert, got[alert], comps)
		}
	}
	for _, alert := range GrafanaAlertNames() {
		if len(got[alert]) == 0 {
			t.Errorf("%s fires for no component with hair-trigger thresholds", alert)
		}
	}
	t.Logf("hair-trigger thresholds fire: %v", got)
}

// startPrometheus starts Debian's Prometheus scraping h every second and returns its base URL
// once it has scraped scrapes times; it stops when ctx ends.
func startPrometheus(ctx context.Context, t *testing.T, h http.Handler, scrapes int) string {
	t.Helper()
	promBin := testenv.Binary(t, "/usr/bin/prometheus", "prometheus")
	exporter := httptest.NewServer(h)
	t.Cleanup(exporter.Close)
	ctx, cancel := context.WithCancel(ctx)
	dir := t.TempDir()
	config := fmt.Sprintf("global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: buildkite_deployments_exporter\n    static_configs:\n      - targets: [%q]\n",
		strings.TrimPrefix(exporter.URL, "http://"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	var logs bytes.Buffer
	cmd := exec.CommandContext(ctx, promBin, "--config.file="+filepath.Join(dir, "prometheus.yml"),
		"--storage.tsdb.path="+filepath.Join(dir, "data"), "--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus log:\n%s", logs.String())
		}
	})
	base := "http://" + addr
	for {
		r, err := promQuery(ctx, base, fmt.Sprintf(`count_over_time(up{job="buildkite_deployments_exporter"}[1m]) >= %d`, scrapes))
		if err == nil && len(r.Data.Result) == 1 {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("prometheus did not scrape the fixture %d times: %v (last error %v)", scrapes, ctx.Err(), err)
		}
		time.Sleep(300 * time.Millisecond)
	}

	return base
}

var grafanaLoad = flag.Int("grafana-load", 0, "TestGrafanaQueryLoad: evaluate the Grafana rules of this many synthetic components (e.g. 1000) in Prometheus and report the query time per minute")

// TestGrafanaQueryLoad measures what Grafana's evaluation of the generated rules costs
// Prometheus: N copies of the fixture's shop component (with a running deployment) are scraped,
// then every rule's query runs once, sequentially; the report is the query time Grafana's
// schedule adds up to per minute (1m groups once, 5m groups a fifth). The data spans seconds,
// not days, so range queries read few samples: a lower bound for a long-running Prometheus.
// Off unless -grafana-load is given.
func TestGrafanaQueryLoad(t *testing.T) {
	n := *grafanaLoad
	if n <= 0 {
		t.Skip("give -grafana-load=1000 to measure")
	}
	fixture, err := os.ReadFile("../testdata/exposition.prom")
	if err != nil {
		t.Fatal(err)
	}
	var shop []string
	for _, line := range strings.Split(string(fixture), "\n") {
		switch {
		case strings.Contains(line, `component="shop"`):
			shop = append(shop, line)
		case strings.HasPrefix(line, "buildkite_deployment_running_since_timestamp_seconds{"):
			shop = append(shop, strings.Replace(line, `component="worker"`, `component="shop"`, 1))
		}
	}
	var body bytes.Buffer
	comps := make([]GrafanaComponent, n)
	for i := range n {
		name := fmt.Sprintf("component-%04d", i)
		comps[i] = GrafanaComponent{Label: name, Owner: "team"}
		for _, line := range shop {
			body.WriteString(strings.ReplaceAll(line, `component="shop"`, `component="`+name+`"`))
			body.WriteByte('\n')
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	base := startPrometheus(ctx, t, rising(body.Bytes()), 10)
	f, err := Grafana(DefaultParams(), GrafanaOptions{DatasourceUID: "prometheus"}, comps)
	if err != nil {
		t.Fatal(err)
	}
	var perMinute time.Duration
	per := map[string]time.Duration{}
	queries := 0
	for _, g := range f.Groups {
		d, _ := time.ParseDuration(g.Interval)
		for _, r := range g.Rules {
			start := time.Now()
			if _, err := promQuery(ctx, base, r.Data[0].Model.Expr); err != nil {
				t.Fatalf("%s: %v", r.Title, err)
			}
			took := time.Since(start)
			queries++
			per[strings.Fields(r.Title)[0]] += took
			perMinute += took * time.Minute / d
		}
	}
	t.Logf("%d components, %d series, %d rules: Prometheus answers Grafana's schedule in %.1f s of query time per minute (%.0f%% of one core, sequential, HTTP included)",
		n, len(shop)*n, queries, perMinute.Seconds(), 100*perMinute.Seconds()/60)
	for _, a := range GrafanaAlertNames() {
		t.Logf("  %s: %.1f ms per query", a, float64(per[a].Microseconds())/1000/float64(n))
	}
}
