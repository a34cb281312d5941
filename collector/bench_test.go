package collector

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/cputime"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// benchInput is components × 3 environments. worst: each environment has passed, failed and
// canceled deployments, recoveries, lead times, approvals, a running and an awaiting build, so
// every per-environment series exists. Otherwise (typical): passed and failed deployments with
// lead times and recoveries, no block steps, nothing running.
func benchInput(components int, worst bool) snapshotInput {
	agg := newAggregate()
	var comps []backstage.Component
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	live := map[string]liveEnv{}
	for i := range components {
		name := fmt.Sprintf("component-%04d", i)
		c := component(name, name+"-deploy")
		comps = append(comps, c)
		for e, env := range []string{"production", "staging", "development"} {
			states := []string{"failed", "passed", "passed"}
			wait := -1.0
			if worst {
				states, wait = []string{"failed", "passed", "canceled", "passed"}, 120
				live[envKey(name, env)] = liveEnv{Running: 1, RunningSince: base, Awaiting: 1, AwaitingSince: base}
			}
			for j, st := range states {
				at := base.Add(time.Duration(i*100+e*10+j) * time.Minute)
				agg.apply(store.Record{
					Key: fmt.Sprint(i, e, j), Pipeline: testOrg + "/" + name + "-deploy", Component: name, Environment: env,
					State: st, Commit: sha(i), Version: fmt.Sprintf("1.%d.%d", i, j),
					StartedAt: at.Add(-10 * time.Minute), FinishedAt: at, LeadTimeSeconds: 3600, ApprovalWaitSeconds: wait,
				})
			}
		}
	}
	return snapshotInput{cfg: config.Default(), catalog: comps, agg: agg, live: live,
		orgs: map[string]orgHealth{testOrg: {Polled: true, LastOK: true, LastSuccess: base}}, started: true}
}

// BenchmarkRenderMetrics serves /metrics for 1,000 components × 3 environments through promhttp,
// as a scrape does, plain and gzipped (Prometheus asks for gzip). Target: under 100 ms.
func BenchmarkRenderMetrics(b *testing.B) {
	for _, worst := range []bool{false, true} {
		for _, gz := range []bool{false, true} {
			b.Run(fmt.Sprintf("worst=%v/gzip=%v", worst, gz), func(b *testing.B) { benchRender(b, worst, gz) })
		}
	}
}

// BenchmarkRenderMetricsCached serves the same through Collector.Handler, which encodes the
// deployment series once per poll; the first scrape after a poll pays what promhttp pays.
func BenchmarkRenderMetricsCached(b *testing.B) {
	for _, gz := range []bool{false, true} {
		b.Run(fmt.Sprintf("worst=true/gzip=%v", gz), func(b *testing.B) { benchRenderWith(b, true, gz, true) })
	}
}

func benchRender(b *testing.B, worst, gz bool) { benchRenderWith(b, worst, gz, false) }

func benchRenderWith(b *testing.B, worst, gz, cached bool) {
	in := benchInput(1000, worst)
	c := &Collector{logger: log.NewNopLogger()}
	s := buildSnapshot(in)
	c.snap.Store(s)
	reg := prometheus.NewRegistry()
	reg.MustRegister(c)
	h := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if cached {
		h = c.Handler(prometheus.NewRegistry())
		s.encode(false) // done by the poller when it publishes; see BenchmarkRenderMetrics for its cost
	}
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	var size int
	cpu := cputime.Process()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatalf("status %d", rec.Code)
		}
		size = rec.Body.Len()
	}
	b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
	series := 0
	mfs, err := reg.Gather()
	if err != nil {
		b.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			series++
			if h := m.GetHistogram(); h != nil {
				series += len(h.GetBucket()) + 2 // +Inf, _sum and _count besides the buckets
			}
		}
	}
	b.ReportMetric(float64(series), "series")
	b.ReportMetric(float64(size), "bytes")
}

// BenchmarkBuildSnapshot measures what each poll cycle spends rendering the snapshot.
func BenchmarkBuildSnapshot(b *testing.B) {
	in := benchInput(1000, true)
	cpu := cputime.Process()
	for b.Loop() {
		buildSnapshot(in)
	}
	b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
}
