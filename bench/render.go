package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime/pprof"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/exposition"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/cputime"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

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
	key := store.Key(id, finished, env)
	if state == "failed" {
		key = store.AttemptKey(id, 0, env) // store format 2: failed outcomes are keyed by attempt
	}
	return store.Record{
		Key:                 key,
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

// countingLog counts Appends (one per poll cycle of the one organization) and sends the count
// of each on appended, dropping it when nobody listens.
type countingLog struct {
	store.Log
	mu       sync.Mutex
	n        int
	appended chan int
}

func newCountingLog(l store.Log) *countingLog {
	return &countingLog{Log: l, appended: make(chan int, 1)}
}

func (l *countingLog) Append(b store.Batch) ([]store.Record, error) {
	r, err := l.Log.Append(b)
	l.mu.Lock()
	l.n++
	n := l.n
	l.mu.Unlock()
	select {
	case l.appended <- n:
	default:
	}
	return r, err
}

// waitAppend waits for the next Append and returns the count.
func (l *countingLog) waitAppend(timeout time.Duration) (int, error) {
	select {
	case n := <-l.appended:
		return n, nil
	case <-time.After(timeout):
		return 0, fmt.Errorf("no poll cycle stored anything in %v", timeout)
	}
}

// cycleSample is at least how long poll cycles run back to back to measure one; at least
// minCycles are measured.
var cycleSample = 3 * time.Second

const minCycles = 2

// coldSamples is how many cold scrapes of each format the first-scrape figure is the median of
// (coldSamplesLarge above 1,000 components, where each costs about a second): a single one
// moves by ±30% on this shared machine.
var coldSamples, coldSamplesLarge = 15, 5

// firstScrapeSamples is how many poll cycles the first-scrape-after-a-poll figure is the median of.
var firstScrapeSamples = 3

// scrapeResult is one scrape benchmark: per scrape, and the body of the last.
type scrapeResult struct {
	nsPerOp, cpuMsPerOp  float64
	allocsPerOp, bytesOp int64
	body                 int
	contentType          string
}

// discard is a ResponseWriter that counts the body and keeps nothing, as a socket would: the
// scrape figures do not include a recorder's copy of the body.
type discard struct {
	h    http.Header
	code int
	n    int
}

func (d *discard) Header() http.Header {
	if d.h == nil {
		d.h = http.Header{}
	}
	return d.h
}

func (d *discard) WriteHeader(code int) { d.code = code }

func (d *discard) Write(p []byte) (int, error) {
	d.n += len(p)
	return len(p), nil
}

// measureScrape runs h as a scrape with accept (empty: none) does, as a Go benchmark, and counts
// the process CPU time too (the machine is shared, so wall time carries other jobs' load).
func measureScrape(h http.Handler, accept string, gz bool) (scrapeResult, error) {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	var res scrapeResult
	var cpu time.Duration
	var failed error
	r := testing.Benchmark(func(b *testing.B) {
		b.ReportAllocs()
		w := &discard{}
		before := cputime.Process()
		for b.Loop() {
			w.n, w.h, w.code = 0, nil, 0
			h.ServeHTTP(w, req)
			if w.code != 0 && w.code != http.StatusOK {
				failed = fmt.Errorf("/metrics answered %d", w.code)
				b.SkipNow()
			}
		}
		cpu = cputime.Process() - before
		res.body, res.contentType = w.n, w.Header().Get("Content-Type")
	})
	if failed != nil {
		return res, failed
	}
	res.nsPerOp = float64(r.NsPerOp())
	res.cpuMsPerOp = float64(cpu) / float64(max(r.N, 1)) / 1e6
	if cpu == 0 { // no CPU clock on this platform: wall time
		res.cpuMsPerOp = res.nsPerOp / 1e6
	}
	res.allocsPerOp = r.AllocsPerOp()
	res.bytesOp = r.AllocedBytesPerOp()
	return res, nil
}

// timedScrape serves one scrape and returns its CPU and wall time.
func timedScrape(h http.Handler, accept string, gz bool) (cpu, wall time.Duration, rec *httptest.ResponseRecorder, err error) {
	cpu0, t0 := cputime.Process(), time.Now()
	rec = scrape(h, accept, gz)
	cpu, wall = cputime.Process()-cpu0, time.Since(t0)
	if cpu == 0 {
		cpu = wall
	}
	if rec.Code != http.StatusOK {
		err = fmt.Errorf("/metrics answered %d: %s", rec.Code, rec.Body.String())
	}
	return cpu, wall, rec, err
}

// countSeries counts the sample lines of a plain text exposition.
func countSeries(h http.Handler) (int, error) {
	rec := scrape(h, "", false)
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

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// coldProfile is bench render's -coldprofile.
var coldProfile string

// profileColdEncodes profiles 20 cold encodes of each body format: each on a fresh cache of the
// same snapshot, as the first scrape of a format nobody asked for pays it.
func profileColdEncodes(e *exporter, path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	defer pprof.StopCPUProfile()
	for range 20 {
		h := e.coldHandler()
		for _, bf := range bodyFormats {
			scrape(h, bf.accept, true)
		}
	}
	return nil
}

// renderFigures measures /metrics at n components × 3 environments, wired as the exporter wires
// it (exporter.go): the first scrape of a format nobody asked for (it encodes the body), the
// first scrape after a poll (the poller warmed the body), every scrape after (Go benchmarks), per
// format, gzipped or not; promhttp over the same series without a cache, for comparison; the
// poller's encoding per format (Bodies.Warm); and poll cycles with nothing new, with no body asked
// for and with all three.
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
	sec := fmt.Sprintf("render %d components", n)
	target := func(name string, v float64, unit, note string) {
		fmt.Fprintf(os.Stderr, "%s: %s: %.3g %s; %s\n", sec, name, v, unit, note)
		if n == 1000 {
			figs.target(sec, name, v, unit, "≤ 100 ms at 1,000", v <= 100, note)
		} else {
			figs.info(sec, name, v, unit, note)
		}
	}
	info := func(name string, v float64, unit, note string) {
		fmt.Fprintf(os.Stderr, "%s: %s: %.3g %s; %s\n", sec, name, v, unit, note)
		figs.info(sec, name, v, unit, note)
	}

	e, err := startExporter(exporterOpts{log: mem, comps: comps, interval: 10 * time.Millisecond, hold: true})
	if err != nil {
		return err
	}
	defer e.stop()
	s, err := e.waitFirstCycle()
	if err != nil {
		return err
	}

	// A format nobody asked for in the last 15 minutes: its first scrape encodes the body. A
	// single scrape's CPU time swings with whatever collection the runtime happens to run in
	// it, so the figure is the median of coldSamples such scrapes, each through the exporter's
	// handler with a body cache of its own (the first through the exporter's own cache).
	// The formats take turns at going first: an encode pays for collecting what the one before
	// it left, and protobuf's leaves more than the text formats'.
	colds := make([][]time.Duration, len(bodyFormats))
	walls := make([][]time.Duration, len(bodyFormats))
	gzSize := make([]int, len(bodyFormats))
	samples := coldSamples
	if n > 1000 {
		samples = coldSamplesLarge
	}
	for i := range samples {
		h := e.handler
		if i > 0 {
			h = e.coldHandler()
		}
		for t := range bodyFormats {
			j := (i + t) % len(bodyFormats)
			f := bodyFormats[j]
			cpu, wall, rec, err := timedScrape(h, f.accept, true)
			if err != nil {
				return fmt.Errorf("%s: %s: %w", sec, f.name, err)
			}
			colds[j], walls[j], gzSize[j] = append(colds[j], cpu), append(walls[j], wall), rec.Body.Len()
		}
	}
	for j, f := range bodyFormats {
		c := sortedDurations(colds[j])
		target(fmt.Sprintf("first scrape of %s, gzip, not asked for within 15 min (encodes)", f.name), ms(percentile(c, 50)), "cpu-ms",
			fmt.Sprintf("%s; median of %d cold scrapes, each with a body cache of its own (least %.0f, most %.0f cpu-ms), %.0f ms wall; once, then the poller keeps it warm; body %.2f MB gzipped",
				f.who, len(c), ms(c[0]), ms(c[len(c)-1]), ms(percentile(sortedDurations(walls[j]), 50)), float64(gzSize[j])/1e6))
	}
	if coldProfile != "" {
		if err := profileColdEncodes(e, coldProfile); err != nil {
			return err
		}
	}
	series, err := countSeries(e.bodyOnly)
	if err != nil {
		return err
	}
	all, err := countSeries(e.handler)
	if err != nil {
		return err
	}
	info("series", float64(series), "series", fmt.Sprintf("deployment series of %d components × 3 environments, %d deployments; the exporter's registries add %d (catalog info, Go, process, health)", n, records, all-series))

	// The poller warms every body asked for when it publishes; the first scrape after a poll
	// only copies it. The poller waits (publishGate) while the harness scrapes.
	firsts := make([][]time.Duration, len(bodyFormats))
	for range firstScrapeSamples {
		if s, err = e.nextCycle(); err != nil {
			return err
		}
		for i, f := range bodyFormats {
			cpu, _, _, err := timedScrape(e.handler, f.accept, true)
			if err != nil {
				return err
			}
			firsts[i] = append(firsts[i], cpu)
		}
	}
	for i, f := range bodyFormats {
		target(fmt.Sprintf("first scrape of %s, gzip, after a poll (the poller warmed it)", f.name), ms(percentile(sortedDurations(firsts[i]), 50)), "cpu-ms",
			fmt.Sprintf("%s; median of %d polls", f.who, firstScrapeSamples))
	}

	// Every scrape, body warm: Go benchmarks.
	type variant struct {
		name, accept, who string
		h                 http.Handler
		gz, target        bool
	}
	variants := []variant{
		{"protobuf, gzip", acceptProm3Protobuf, "Prometheus 3.x, protobuf first", e.handler, true, true},
		{"OpenMetrics 1.0.0, gzip", acceptProm3, "Prometheus 3.x default", e.handler, true, true},
		{"OpenMetrics 1.0.0, gzip (Prometheus 2.42)", acceptProm242, "Prometheus 2.42 default", e.handler, true, true},
		{"text 0.0.4, gzip", "", "no Accept header", e.handler, true, true},
		{"protobuf, plain", acceptProm3Protobuf, "no gzip: decompresses the cached body", e.handler, false, false},
		{"OpenMetrics 1.0.0, plain", acceptProm3, "no gzip: decompresses the cached body", e.handler, false, false},
		{"text 0.0.4, plain", "", "no gzip: decompresses the cached body", e.handler, false, false},
		{"text 0.0.4, gzip, deployment body only", "", "empty exporter registry, as the previous encoder's figure was measured", e.bodyOnly, true, false},
		{"text 0.0.4, gzip, exporter registries only", "", "no deployment body: version, Go, process, catalog and health collectors", e.registriesOnly, true, false},
		{"text 0.0.4, gzip, catalog collector only", "", "buildkite_component_info (one series per component) and the catalog gauges, gathered at every scrape", e.catalogOnly, true, false},
	}
	for _, v := range variants {
		r, err := measureScrape(v.h, v.accept, v.gz)
		if err != nil {
			return fmt.Errorf("%s: %s: %w", sec, v.name, err)
		}
		note := fmt.Sprintf("%s; %.2f ms wall, %d allocs, %.2f MB allocated per scrape; body %.2f MB; %s",
			v.who, r.nsPerOp/1e6, r.allocsPerOp, float64(r.bytesOp)/1e6, float64(r.body)/1e6, r.contentType)
		name := "scrape, " + v.name
		if v.target {
			target(name, r.cpuMsPerOp, "cpu-ms/scrape", note)
		} else {
			info(name, r.cpuMsPerOp, "cpu-ms/scrape", note)
		}
		figs.info(sec, name+": allocations", float64(r.allocsPerOp), "allocs/scrape", "")
	}
	// For comparison: promhttp over the same series, encoding at every scrape.
	uncached := promhttp.HandlerFor(exposition.NewGatherer(s), promhttp.HandlerOpts{})
	for _, gz := range []bool{true, false} {
		r, err := measureScrape(uncached, "", gz)
		if err != nil {
			return err
		}
		name := "promhttp, text 0.0.4, plain (no cache, for comparison)"
		if gz {
			name = "promhttp, text 0.0.4, gzip (no cache, for comparison)"
		}
		info(name, r.cpuMsPerOp, "cpu-ms/scrape", fmt.Sprintf("exposition.NewGatherer; %d allocs/scrape, body %.2f MB", r.allocsPerOp, float64(r.body)/1e6))
	}

	// The poller's encoding per format: Bodies.Warm of a new snapshot (same content) with only
	// that format asked for.
	for _, f := range bodyFormats {
		cur := s
		b := exposition.NewBodies(exposition.BodiesOpts{Body: benchBody})
		h := exposition.NewHandler(func() *snapshot.Snapshot { return cur }, nil, exposition.HandlerOpts{Bodies: b})
		if rec := scrape(h, f.accept, true); rec.Code != http.StatusOK {
			return fmt.Errorf("%s: %s: status %d", sec, f.name, rec.Code)
		}
		var cpu time.Duration
		began := time.Now()
		warms := 0
		for warms < minCycles || time.Since(began) < cycleSample {
			next := *s // a new snapshot per poll, same content
			next.Taken = s.Taken.Add(time.Duration(warms+1) * time.Second)
			cpu0 := cputime.Process()
			b.Warm(&next)
			cpu += cputime.Process() - cpu0
			warms++
			cur = &next
		}
		rec := scrape(h, f.accept, true)
		if rec.Code != http.StatusOK {
			return fmt.Errorf("%s: %s after Warm: status %d", sec, f.name, rec.Code)
		}
		info(fmt.Sprintf("poller's encoding of %s per cycle (Bodies.Warm)", f.name), ms(cpu)/float64(warms), "cpu-ms/cycle",
			fmt.Sprintf("%d cycles; gzipped body %.2f MB", warms, float64(rec.Body.Len())/1e6))
	}
	if err := e.stop(); err != nil {
		return err
	}

	// Poll cycles with nothing new, back to back: the snapshot rebuild, then Warm of the bodies
	// asked for (none, or all three).
	for _, asked := range []bool{false, true} {
		cl := newCountingLog(mem)
		e, err := startExporter(exporterOpts{log: cl, comps: comps, interval: time.Millisecond})
		if err != nil {
			return err
		}
		if _, err := e.waitFirstCycle(); err != nil {
			return err
		}
		if asked {
			for _, f := range bodyFormats {
				if rec := scrape(e.handler, f.accept, true); rec.Code != http.StatusOK {
					e.stop()
					return fmt.Errorf("%s: %s: status %d", sec, f.name, rec.Code)
				}
			}
		}
		// From one cycle's Append to a later one's: whole cycles. The first Append received may
		// have waited in the channel since before the formats were asked for; the next is later.
		_, err = cl.waitAppend(time.Minute)
		var first int
		if err == nil {
			first, err = cl.waitAppend(time.Minute)
		}
		if err != nil {
			e.stop()
			return err
		}
		cpu0, t0 := cputime.Process(), time.Now()
		last := first
		for last-first < minCycles || time.Since(t0) < cycleSample {
			if last, err = cl.waitAppend(time.Minute); err != nil {
				e.stop()
				return err
			}
		}
		cpu, wall := cputime.Process()-cpu0, time.Since(t0)
		cycles := last - first
		if err := e.stop(); err != nil {
			return err
		}
		name, note := "poll cycle with nothing new, no body asked for (snapshot rebuild)", "no scraper asked for a body within 15 min: Warm encodes nothing"
		if asked {
			name, note = "poll cycle with nothing new, all three bodies warmed", "snapshot rebuild and Warm of protobuf, OpenMetrics and text"
		}
		info(name, ms(cpu)/float64(cycles), "cpu-ms/cycle", fmt.Sprintf("%s; %d cycles back to back in %v", note, cycles, wall.Round(time.Millisecond)))
	}
	return nil
}
