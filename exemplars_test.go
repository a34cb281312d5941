package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/fixture"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

// prom is a Debian Prometheus 2.42 started by a test.
type prom struct {
	t    *testing.T
	base string
	logs *testenv.LogBuffer
}

// startPrometheus runs /usr/bin/prometheus with the feature flags, scraping target's /metrics
// every second; it is stopped at cleanup.
func startPrometheus(t *testing.T, target string, features ...string) *prom {
	t.Helper()
	bin := testenv.Binary(t, "/usr/bin/prometheus", "prometheus")
	dir := t.TempDir()
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
scrape_configs:
  - job_name: buildkite_deployments_exporter
    static_configs:
      - targets: [%q]
`, strings.TrimPrefix(target, "http://"))
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreeAddr(t)
	args := []string{"--config.file=" + filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path=" + filepath.Join(dir, "data"),
		"--web.listen-address=" + addr, "--log.level=warn"}
	if len(features) > 0 {
		args = append(args, "--enable-feature="+strings.Join(features, ","))
	}
	p := &prom{t: t, base: "http://" + addr, logs: &testenv.LogBuffer{}}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("prometheus %v log:\n%s", features, p.logs.String())
		}
	})
	return p
}

// api GETs a Prometheus HTTP API path and decodes its data into v.
func (p *prom) api(ctx context.Context, path string, q url.Values, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.base+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var out struct {
		Status string          `json:"status"`
		Error  string          `json:"error"`
		Data   json.RawMessage `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return err
	}
	if out.Status != "success" {
		return fmt.Errorf("%s: %s", path, out.Error)
	}
	return json.Unmarshal(out.Data, v)
}

type vectorSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query evaluates expr now; a sample's value is parsed as a float.
func (p *prom) query(ctx context.Context, expr string) (map[string]float64, error) {
	var data struct {
		Result []vectorSample `json:"result"`
	}
	if err := p.api(ctx, "/api/v1/query", url.Values{"query": {expr}}, &data); err != nil {
		return nil, err
	}
	out := map[string]float64{}
	for _, s := range data.Result {
		v, err := strconv.ParseFloat(fmt.Sprint(s.Value[1]), 64)
		if err != nil {
			return nil, err
		}
		out[seriesName(s.Metric)] = v
	}
	return out, nil
}

// seriesName is component/environment[/state] of a deployment series.
func seriesName(m map[string]string) string {
	s := m["component"] + "/" + m["environment"]
	if st := m["state"]; st != "" {
		s += "/" + st
	}
	return s
}

// waitScrapes waits until p has scraped the exporter n times.
func (p *prom) waitScrapes(ctx context.Context, n int) {
	p.t.Helper()
	for {
		got, err := p.query(ctx, `count_over_time(up{job="buildkite_deployments_exporter"}[1m])`)
		if err == nil {
			for _, v := range got {
				if v >= float64(n) {
					if up, _ := p.query(ctx, `up{job="buildkite_deployments_exporter"}`); len(up) != 1 || up["/"] != 1 {
						p.t.Fatalf("the exporter did not scrape cleanly: up = %v", up)
					}
					return
				}
			}
		}
		if ctx.Err() != nil {
			p.t.Fatalf("prometheus did not scrape the exporter %d times: %v (last error %v)", n, ctx.Err(), err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// fixtureOrgFake is fixtureOrg that also returns the fake, whose builds the test compares with.
func fixtureOrgFake(t *testing.T) (f *buildkitetest.Fake, dir, apiURL string) {
	t.Helper()
	f = buildkitetest.New()
	components := fixture.Populate(f, time.Now())
	apiURL = f.Start()
	t.Cleanup(f.Close)
	dir = t.TempDir()
	if err := fixture.WriteFiles(dir, components); err != nil {
		t.Fatal(err)
	}
	return f, dir, apiURL
}

// durationTruth is the fixture's deployment durations per (component, environment, state), as
// internal/fixture/fixture.go defines its builds: count and sum of seconds.
var durationTruth = map[string][2]float64{
	"shop/production/passed":         {2, (12 + 10) * 60}, // 8 days ago (environment prod), 4 days ago + 2h
	"shop/production/failed":         {1, 20 * 60},
	"shop/staging/passed":            {2, (4 + 6) * 60}, // staging and stg
	"api/production/passed":          {1, 55 * 60},
	"api/staging/passed":             {1, 8 * 60},
	"api/staging/failed":             {1, 30 * 60},
	"frontend/web/production/passed": {1, 7 * 60}, // web:live:deployed, one build for two environments
	"frontend/web/staging/passed":    {1, 7 * 60},
	"worker/production/passed":       {1, 3 * 60},
}

// TestPrometheusExemplarsAndNativeHistograms scrapes one exporter (native histograms and
// _created lines on) with two Debian Prometheus 2.42: one with exemplar storage, which
// negotiates OpenMetrics and must return, from /api/v1/query_exemplars, exemplars of the
// duration histogram whose build label is the web path of the fixture build observed (value
// its duration, timestamp its finish, commit its sha); one with native histograms, which
// negotiates protobuf and keeps only the native form, where histogram_count() and
// histogram_sum() per series must equal the fixture's durations. It logs the series each
// instance stores for the deployment histograms and _created lines: BENCHMARKS and README
// figures.
func TestPrometheusExemplarsAndNativeHistograms(t *testing.T) {
	f, dir, apiURL := fixtureOrgFake(t)
	e := startExporter(t, nil, fixtureArgs(dir, apiURL, "--metrics.native-histograms", "--metrics.created-timestamps")...)
	e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := e.get("/-/ready"); return code == 200 })

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	classic := startPrometheus(t, e.url, "exemplar-storage")
	native := startPrometheus(t, e.url, "native-histograms", "exemplar-storage")
	classic.waitScrapes(ctx, 3)
	native.waitScrapes(ctx, 3)

	t.Run("exemplars", func(t *testing.T) {
		var data []struct {
			SeriesLabels map[string]string `json:"seriesLabels"`
			Exemplars    []struct {
				Labels    map[string]string `json:"labels"`
				Value     string            `json:"value"`
				Timestamp float64           `json:"timestamp"`
			} `json:"exemplars"`
		}
		q := url.Values{"query": {"buildkite_deployment_duration_seconds_bucket"},
			"start": {fmt.Sprint(time.Now().Add(-30 * 24 * time.Hour).Unix())}, "end": {fmt.Sprint(time.Now().Add(time.Hour).Unix())}}
		if err := classic.api(ctx, "/api/v1/query_exemplars", q, &data); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for _, s := range data {
			for _, x := range s.Exemplars {
				build := x.Labels["build"]
				seen[seriesName(s.SeriesLabels)] = true
				org, rest, _ := strings.Cut(build, "/")
				pipeline, num, ok := strings.Cut(rest, "/builds/")
				n, err := strconv.Atoi(num)
				if !ok || err != nil || org != fixture.Org {
					t.Errorf("%v: build label %q is not <org>/<pipeline>/builds/<number>", s.SeriesLabels, build)
					continue
				}
				b, found := f.Build(org, pipeline, n)
				if !found {
					t.Errorf("%v: build label %q names no fixture build", s.SeriesLabels, build)
					continue
				}
				if b.WebURL != "https://buildkite.com/"+build {
					t.Errorf("build %q: web URL %s, so Grafana's link https://buildkite.com/${__value.raw} would not open it", build, b.WebURL)
				}
				v, _ := strconv.ParseFloat(x.Value, 64)
				if want := b.FinishedAt.Sub(b.StartedAt.Time).Seconds(); v != want {
					t.Errorf("build %q: exemplar value %v, its duration is %v", build, v, want)
				}
				// Prometheus keeps milliseconds, from the float seconds OpenMetrics writes.
				if got := time.UnixMilli(int64(math.Round(x.Timestamp * 1000))); got.Sub(b.FinishedAt.Time).Abs() > 2*time.Millisecond {
					t.Errorf("build %q: exemplar time %v, finished at %v", build, got, b.FinishedAt.Time)
				}
				// The fixture's commits are a letter repeated: a-f are hex and make a short
				// sha; g and h are not (like "HEAD"), and make no commit label.
				wantLabels := map[string]string{"build": build}
				if strings.Trim(b.Commit, "0123456789abcdef") == "" {
					wantLabels["commit"] = b.Commit[:12]
				}
				if fmt.Sprint(x.Labels) != fmt.Sprint(wantLabels) {
					t.Errorf("build %q: exemplar labels %v, want %v", build, x.Labels, wantLabels)
				}
				if s.SeriesLabels["state"] != b.State {
					t.Errorf("build %q (%s) is an exemplar of %v", build, b.State, s.SeriesLabels)
				}
			}
		}
		for k := range durationTruth {
			if !seen[k] {
				t.Errorf("no exemplar for the duration of %s; got %v", k, seen)
			}
		}
		// The instance ingesting native histograms reads them from the protobuf buckets (the
		// exposition does not repeat them in the native exemplar list).
		var nat []json.RawMessage
		q.Set("query", "buildkite_deployment_duration_seconds")
		if err := native.api(ctx, "/api/v1/query_exemplars", q, &nat); err != nil || len(nat) != len(durationTruth) {
			t.Errorf("exemplars of the native histograms: %d series (%v), want %d", len(nat), err, len(durationTruth))
		}
	})

	t.Run("native histograms", func(t *testing.T) {
		count, err := native.query(ctx, "histogram_count(buildkite_deployment_duration_seconds)")
		if err != nil {
			t.Fatal(err)
		}
		sum, err := native.query(ctx, "histogram_sum(buildkite_deployment_duration_seconds)")
		if err != nil {
			t.Fatal(err)
		}
		for k, want := range durationTruth {
			if count[k] != want[0] || sum[k] != want[1] {
				t.Errorf("%s: histogram_count %v, histogram_sum %v; the fixture has %v deployments of %v s", k, count[k], sum[k], want[0], want[1])
			}
		}
		if len(count) != len(durationTruth) || len(sum) != len(durationTruth) {
			t.Errorf("native series %v, %v; want those of %v", count, sum, durationTruth)
		}
		// The 900 s SLO: histogram_fraction over the native buckets equals the classic
		// bucket's share where no deployment took 899.20–939 s (schema 4's bucket around 900).
		frac, err := native.query(ctx, "histogram_fraction(0, 900, buildkite_deployment_duration_seconds)")
		if err != nil {
			t.Fatal(err)
		}
		le900, err := classic.query(ctx, `buildkite_deployment_duration_seconds_bucket{le="900.0"} / ignoring(le) buildkite_deployment_duration_seconds_count`)
		if err != nil {
			t.Fatal(err)
		}
		if len(frac) != len(durationTruth) || fmt.Sprint(frac) != fmt.Sprint(le900) {
			t.Errorf("histogram_fraction(0, 900) %v, classic le=900 share %v", frac, le900)
		}
		// The classic instance's counts of the same histograms, and of the other three,
		// equal the native ones.
		for _, h := range []string{"duration", "lead_time", "recovery", "approval_wait"} {
			name := "buildkite_deployment_" + h + "_seconds"
			nc, err1 := native.query(ctx, "histogram_count("+name+")")
			cc, err2 := classic.query(ctx, name+"_count")
			if err1 != nil || err2 != nil || len(cc) == 0 || fmt.Sprint(nc) != fmt.Sprint(cc) {
				t.Errorf("%s: native counts %v (%v), classic %v (%v)", name, nc, err1, cc, err2)
			}
			if got, _ := native.query(ctx, name+"_count"); len(got) != 0 {
				t.Errorf("%s: 2.42 with native histograms kept the classic series %v", name, got)
			}
		}
	})

	// The series each stores for the deployment histograms, and the _created series.
	series := func(p *prom, match string) float64 {
		got, err := p.query(ctx, "count({__name__=~\""+match+"\"})")
		if err != nil {
			t.Fatal(err)
		}
		return got["/"]
	}
	hists := "buildkite_deployment_(duration|lead_time|recovery|approval_wait)_seconds(_bucket|_sum|_count)?"
	envs, err := classic.query(ctx, `count(count by (component, environment) (buildkite_deployments_total))`)
	if err != nil {
		t.Fatal(err)
	}
	cs, ns := series(classic, hists), series(native, hists)
	created := series(classic, ".*_created")
	t.Logf("deployment histogram series: classic %v, native %v, over %v (component, environment): %.1f saved per pair; _created series (2.42, --metrics.created-timestamps) %v",
		cs, ns, envs["/"], (cs-ns)/envs["/"], created)
	if ns >= cs || created == 0 {
		t.Errorf("native histograms did not cut series (%v classic, %v native) or no _created series (%v)", cs, ns, created)
	}
}
