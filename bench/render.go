package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/collector"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/cputime"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// quietClient is a Buildkite organization where nothing happens: the render and memory figures
// measure the collector's own cost, so its poll cycles must not wait on an API.
type quietClient struct{}

func (quietClient) ListOrganizationBuilds(context.Context, string, buildkite.ListBuildsOptions, func([]buildkite.Build) error) error {
	return nil
}

func (quietClient) ListPipelineBuilds(context.Context, string, string, buildkite.ListBuildsOptions, func([]buildkite.Build) error) error {
	return nil
}

func (quietClient) GetBuild(_ context.Context, org, pipeline string, n int, _ buildkite.GetBuildOptions) (*buildkite.Build, error) {
	return nil, fmt.Errorf("build %s/%s#%d: %w", org, pipeline, n, buildkite.ErrNotFound)
}

var _ collector.Client = quietClient{}

const benchOrg = "acme"

var environments = []string{"production", "staging", "development"}

func benchComponent(i int) backstage.Component {
	name := fmt.Sprintf("component-%05d", i)
	return backstage.Component{
		Name: name, Namespace: "default", Label: name, Ref: "component:default/" + name,
		Owner: "team-" + name, System: "core", Lifecycle: "production", Type: "service",
		Pipelines: []backstage.PipelineRef{{Org: benchOrg, Pipeline: name + "-deploy"}},
	}
}

func benchCatalog(n int) []backstage.Component {
	out := make([]backstage.Component, n)
	for i := range out {
		out[i] = benchComponent(i)
	}
	return out
}

// benchRecord is deployment i of a catalog of n components: it cycles through the components'
// environments, so every (component, environment) gets passed and failed deployments, recoveries
// and lead times: the "typical" shape of collector/README.md (≈ 42 series per environment).
func benchRecord(i, n int, end time.Time) store.Record {
	comp := benchComponent(i % n)
	env := environments[(i/n)%len(environments)]
	round := i / (n * len(environments))
	state := [...]string{"failed", "passed", "passed", "passed", "canceled", "passed", "passed", "failed", "passed", "passed"}[round%10]
	finished := end.Add(-time.Duration(i) * 31 * time.Second)
	id := fmt.Sprintf("0190a1b2-c3d4-7e5f-8a9b-%012x", i)
	return store.Record{
		Key:                 store.Key(id, finished, env),
		Organization:        benchOrg,
		Pipeline:            comp.Pipelines[0].String(),
		Component:           comp.Label,
		Environment:         env,
		State:               state,
		BuildID:             id,
		BuildNumber:         round + 1,
		WebURL:              fmt.Sprintf("https://buildkite.com/%s/%s/builds/%d", benchOrg, comp.Pipelines[0].Pipeline, round+1),
		Commit:              fmt.Sprintf("%040x", i*7919),
		Version:             fmt.Sprintf("v1.%d.%d", round, i%97),
		CreatedAt:           finished.Add(-14 * time.Minute),
		StartedAt:           finished.Add(-12 * time.Minute),
		FinishedAt:          finished,
		LeadTimeSeconds:     float64(1800 + i%86400),
		ApprovalWaitSeconds: -1,
	}
}

// countingLog counts Appends: one per poll cycle of the one organization.
type countingLog struct {
	store.Log
	mu sync.Mutex
	n  int
}

func (l *countingLog) Append(b store.Batch) ([]store.Record, error) {
	r, err := l.Log.Append(b)
	l.mu.Lock()
	l.n++
	l.mu.Unlock()
	return r, err
}

func (l *countingLog) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// startQuietCollector runs a collector over l until its first poll cycle has published a snapshot and
// returns how long that took (the start: replay, first cycle, snapshot).
// The collector is configured as the exporter configures it (EncodedOnly: encoded by the poller,
// served through Handler only).
func startQuietCollector(l store.Log, comps []backstage.Component, interval time.Duration) (*collector.Collector, func() error, time.Duration, error) {
	return startQuietCollectorLogger(l, comps, interval, log.NewNopLogger(), true)
}

func startQuietCollectorLogger(l store.Log, comps []backstage.Component, interval time.Duration, logger log.Logger, encodedOnly bool) (*collector.Collector, func() error, time.Duration, error) {
	c, err := collector.New(collector.Options{
		Client:       quietClient{},
		Catalog:      func() []backstage.Component { return comps },
		Log:          l,
		PollInterval: interval,
		Logger:       logger,
		EncodedOnly:  encodedOnly,
	})
	if err != nil {
		return nil, nil, 0, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	began := time.Now()
	go func() { done <- c.Run(ctx) }()
	var once sync.Once
	var runErr error
	stop := func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	for !c.Ready() {
		select {
		case err := <-done:
			cancel()
			return nil, nil, 0, fmt.Errorf("collector stopped before its first cycle: %v", err)
		case <-time.After(5 * time.Millisecond):
		}
	}
	return c, stop, time.Since(began), nil
}

// cycleSample is how long poll cycles run back to back to measure one.
var cycleSample = 3 * time.Second

// firstScrapeSamples is how many fresh collectors the first-scrape figure is the median of.
var firstScrapeSamples = 3

// scrapeResult is one scrape benchmark: per scrape, and the body of the last.
type scrapeResult struct {
	nsPerOp, cpuMsPerOp  float64
	allocsPerOp, bytesOp int64
	body                 int
}

// measureScrape runs h as a scrape does, as a Go benchmark, and counts the process CPU time too
// (the machine is shared, so wall time carries other jobs' load).
func measureScrape(h http.Handler, gz bool) scrapeResult {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	var res scrapeResult
	var cpu time.Duration
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		before := cputime.Process()
		for b.Loop() {
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != http.StatusOK {
				b.Fatalf("status %d", rec.Code)
			}
			res.body = rec.Body.Len()
		}
		cpu = cputime.Process() - before
	})
	res.nsPerOp = float64(r.NsPerOp())
	res.cpuMsPerOp = float64(cpu) / float64(max(r.N, 1)) / 1e6
	if cpu == 0 { // no CPU clock on this platform: wall time
		res.cpuMsPerOp = res.nsPerOp / 1e6
	}
	res.allocsPerOp = r.AllocsPerOp()
	res.bytesOp = r.AllocedBytesPerOp()
	return res
}

// countSeries counts the sample lines of a plain text exposition.
func countSeries(h http.Handler) (int, error) {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		return 0, fmt.Errorf("/metrics: status %d", rec.Code)
	}
	n := 0
	for line := range strings.Lines(rec.Body.String()) {
		if !strings.HasPrefix(line, "#") && strings.TrimSpace(line) != "" {
			n++
		}
	}
	return n, nil
}

// renderFigures measures /metrics at n components × 3 environments: through Collector.Handler
// (how the exporter serves it: encoded by the poller once per poll) and, for comparison, through
// promhttp (encoding at every scrape), plain and gzipped, and the cost of a poll cycle that finds
// nothing new, encoding included.
func renderFigures(figs *figures, n int) error {
	end := time.Now()
	mem := store.NewMemory()
	records := n * len(environments) * 3
	batch := store.Batch{Records: make([]store.Record, 0, records)}
	for i := range records {
		batch.Records = append(batch.Records, benchRecord(i, n, end))
	}
	if _, err := mem.Append(batch); err != nil {
		return err
	}
	comps := benchCatalog(n)
	// Keeps its const metrics, so promhttp can render them for the comparison.
	c, stop, _, err := startQuietCollectorLogger(mem, comps, time.Hour, log.NewNopLogger(), false)
	if err != nil {
		return err
	}
	defer stop()
	sec := fmt.Sprintf("render %d components", n)

	cached := c.Handler(prometheus.NewRegistry())
	series, err := countSeries(cached)
	if err != nil {
		return err
	}
	figs.info(sec, "series", float64(series), "series", fmt.Sprintf("%d components × 3 environments, %d deployments", n, records))
	reg := prometheus.NewRegistry()
	if err := reg.Register(c); err != nil {
		return err
	}
	uncached := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	for _, v := range []struct {
		name   string
		h      http.Handler
		gz     bool
		target bool
	}{
		{"Collector.Handler, gzip (every scrape but the first after a poll)", cached, true, true},
		{"Collector.Handler, plain (every scrape but the first after a poll)", cached, false, false},
		{"promhttp, gzip (no cache, for comparison)", uncached, true, false},
		{"promhttp, plain (no cache, for comparison)", uncached, false, false},
	} {
		r := measureScrape(v.h, v.gz)
		note := fmt.Sprintf("%.1f ms wall, %d allocs/op, %.1f MB allocated/op (the recorder's copy of the body included), body %.2f MB",
			r.nsPerOp/1e6, r.allocsPerOp, float64(r.bytesOp)/1e6, float64(r.body)/1e6)
		fmt.Fprintf(os.Stderr, "%s: %s: %.1f cpu-ms/op; %s\n", sec, v.name, r.cpuMsPerOp, note)
		if n == 1000 && v.target {
			figs.target(sec, v.name, r.cpuMsPerOp, "cpu-ms/scrape", "< 100 ms at 1,000", r.cpuMsPerOp < 100, note)
		} else {
			figs.info(sec, v.name, r.cpuMsPerOp, "cpu-ms/scrape", note)
		}
		figs.info(sec, v.name+": allocations", float64(r.allocsPerOp), "allocs/scrape", "")
	}
	if err := stop(); err != nil {
		return err
	}

	// The first scrape after a poll, on fresh collectors configured as the exporter's: the poller
	// encoded the snapshot when it published it.
	var cpus, walls []time.Duration
	for range firstScrapeSamples {
		c, stop, _, err := startQuietCollector(mem, comps, time.Hour)
		if err != nil {
			return err
		}
		runtime.GC()
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept-Encoding", "gzip")
		rec := httptest.NewRecorder()
		cpu0, t0 := cputime.Process(), time.Now()
		c.Handler(prometheus.NewRegistry()).ServeHTTP(rec, req)
		cpus, walls = append(cpus, cputime.Process()-cpu0), append(walls, time.Since(t0))
		if err := stop(); err != nil {
			return err
		}
		if rec.Code != http.StatusOK {
			return fmt.Errorf("%s: first scrape answered %d", sec, rec.Code)
		}
	}
	cpu, wall := percentile(sortedDurations(cpus), 50), percentile(sortedDurations(walls), 50)
	if cpu == 0 {
		cpu = wall
	}
	name := "Collector.Handler, gzip, first scrape after a poll"
	note := fmt.Sprintf("median of %d fresh collectors; %.0f ms wall; once per poll interval", firstScrapeSamples, float64(wall)/1e6)
	fmt.Fprintf(os.Stderr, "%s: %s: %.1f cpu-ms; %s\n", sec, name, float64(cpu)/1e6, note)
	if n == 1000 {
		figs.target(sec, name, float64(cpu)/1e6, "cpu-ms/scrape", "< 100 ms at 1,000", cpu < 100*time.Millisecond, note)
	} else {
		figs.info(sec, name, float64(cpu)/1e6, "cpu-ms/scrape", note)
	}

	// A poll cycle that finds nothing new still rebuilds the snapshot; run cycles back to back.
	cl := &countingLog{Log: mem}
	_, stop2, _, err := startQuietCollector(cl, comps, time.Millisecond)
	if err != nil {
		return err
	}
	before, cpu0, t0 := cl.count(), cputime.Process(), time.Now()
	time.Sleep(cycleSample)
	cycles, cpu, wall := cl.count()-before, cputime.Process()-cpu0, time.Since(t0)
	if err := stop2(); err != nil {
		return err
	}
	if cycles == 0 {
		return fmt.Errorf("%s: no poll cycle ran in %v", sec, wall)
	}
	figs.info(sec, "poll cycle with nothing new (snapshot rebuild and encoding)", float64(cpu)/float64(cycles)/1e6, "cpu-ms/cycle",
		fmt.Sprintf("%d cycles back to back in %v; once per poll interval", cycles, wall.Round(time.Millisecond)))
	return nil
}
