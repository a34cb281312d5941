package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/collector"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/exposition"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/cputime"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// Flags of the economy harness (go test ./bench -run TestEconomy -args -scale=1 …). Without them
// go test runs a small organization, which checks the harness and the poller's invariants.
var (
	flagScale         = flag.Float64("scale", 0, "organization size relative to the issue's (1 = 20,000 pipelines, 2,000 annotated, 20,000 builds/day); 0 = a small organization (0.01)")
	flagBackfillScale = flag.Float64("backfill-scale", 0, "organization size for the 30- and 90-day backfills; 0 = -scale. The fake scans its whole index for every org-wide page, so a full-scale backfill costs about an hour of CPU")
	flagDays          = flag.Int("days", 90, "days of build history in the fake")
	flagCycles        = flag.Int("cycles", 0, "steady-state poll cycles to measure; 0 = 240 (two hours) at -scale, 20 otherwise")
	flagOut           = flag.String("out", "", "append the figures as JSON lines to this file")
	flagRPM           = flag.Float64("rpm", 50, "requests per minute the client may send: Buildkite's per-user limit is 50")
)

const (
	pollInterval = 30 * time.Second // --poll.interval default
	day          = 24 * time.Hour
	warmup       = 2 // steady-state cycles not counted: the catch-up after the backfill and the first with live builds
)

// epoch is where a synctest bubble's clock starts; the history ends there, so every bubble sees
// the same organization.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// recordingLog is the deployment log with the fake time of every Append: a poll cycle ends with
// exactly one Append per organization, so it marks cycle ends and when records became new.
type recordingLog struct {
	store.Log
	mu      sync.Mutex
	appends []appendEvent
}

type appendEvent struct {
	at    time.Time
	added int
}

func (l *recordingLog) Append(b store.Batch) ([]store.Record, error) {
	added, err := l.Log.Append(b)
	if err == nil {
		l.mu.Lock()
		l.appends = append(l.appends, appendEvent{at: time.Now(), added: len(added)})
		l.mu.Unlock()
	}
	return added, err
}

// drain returns the appends logged so far and forgets them, so that a long run keeps none.
func (l *recordingLog) drain() []appendEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.appends
	l.appends = nil
	return out
}

func (l *recordingLog) events() []appendEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]appendEvent(nil), l.appends...)
}

// apiRequest is one request a client sent, at the fake time it was sent.
type apiRequest struct {
	route  string
	kind   string // "open" (a state[] filter), "finished" (the other listings) or "get" (Get-a-build)
	status int
	at     time.Time
}

// requestLog is the client's transport, logging every request: the fake's own log is shared by
// the bubbles that run at the same time, so each client keeps its own.
type requestLog struct {
	next http.RoundTripper
	mu   sync.Mutex
	reqs []apiRequest
}

func (l *requestLog) RoundTrip(req *http.Request) (*http.Response, error) {
	r := apiRequest{route: routeOf(req.URL.Path), kind: "finished", at: time.Now()}
	switch {
	case r.route == buildkitetest.RouteBuild:
		r.kind = "get"
	case req.URL.Query().Has("state[]"):
		r.kind = "open"
	}
	resp, err := l.next.RoundTrip(req)
	if err == nil {
		r.status = resp.StatusCode
	}
	l.mu.Lock()
	l.reqs = append(l.reqs, r)
	l.mu.Unlock()
	return resp, err
}

func (l *requestLog) requests() []apiRequest {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]apiRequest(nil), l.reqs...)
}

func (l *requestLog) reset() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.reqs = nil
}

// routeOf names a request path with the fake's route templates.
func routeOf(path string) string {
	seg := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(seg) == 4 && seg[1] == "organizations" && seg[3] == "builds":
		return buildkitetest.RouteOrgBuilds
	case len(seg) == 6 && seg[1] == "organizations" && seg[3] == "pipelines" && seg[5] == "builds":
		return buildkitetest.RoutePipelineBuilds
	case len(seg) == 7 && seg[1] == "organizations" && seg[3] == "pipelines" && seg[5] == "builds":
		return buildkitetest.RouteBuild
	case len(seg) == 8 && seg[1] == "organizations" && seg[3] == "pipelines" && seg[5] == "builds" && seg[7] == "annotations":
		return buildkitetest.RouteAnnotations
	}
	return path
}

// running is a collector started by startCollector.
type running struct {
	c      *collector.Collector
	scrape http.Handler // /metrics as main.go serves it: exposition.NewHandler, bodies warmed by the poller
	log    *recordingLog
	api    *requestLog
	cancel context.CancelFunc
	done   chan error
}

func newClient(t *testing.T, f *buildkitetest.Fake, token string) (*buildkite.Client, *requestLog) {
	t.Helper()
	f.SetToken(token, buildkite.ScopeReadBuilds)
	api := &requestLog{next: f.Transport()}
	cl, err := buildkite.NewClient(buildkite.Config{
		BaseURL:           buildkitetest.InProcessBaseURL,
		Token:             secret.Secret(token),
		RequestsPerMinute: *flagRPM,
		HTTPClient:        &http.Client{Transport: api},
		Logger:            log.NewNopLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return cl, api
}

// startCollector runs the real collector, with the real client paced at -rpm, against the fake
// in process, with an in-memory log. Call it inside a bubble. tweak, when given, changes the
// options (the poll interval, the retention, the log) before the collector is made.
func startCollector(t *testing.T, f *buildkitetest.Fake, comps []backstage.Component, backfill time.Duration, token string, tweak ...func(*collector.Options)) *running {
	return startCollectorWith(t, f, comps, backfill, token, pollInterval, 0, false, tweak...)
}

// startCollectorEvery is startCollector with another poll interval and, when webhookQueue is
// positive, the collector's webhook queue enabled.
func startCollectorEvery(t *testing.T, f *buildkitetest.Fake, comps []backstage.Component, backfill time.Duration, token string,
	interval time.Duration, webhookQueue int,
) *running {
	return startCollectorWith(t, f, comps, backfill, token, interval, webhookQueue, false)
}

// startCollectorWith is startCollectorEvery with --buildkite.read-annotations.
func startCollectorWith(t *testing.T, f *buildkitetest.Fake, comps []backstage.Component, backfill time.Duration, token string,
	interval time.Duration, webhookQueue int, annotations bool, tweak ...func(*collector.Options),
) *running {
	t.Helper()
	r := &running{done: make(chan error, 1)}
	cl, api := newClient(t, f, token)
	r.api = api
	bodies := exposition.NewBodies(exposition.BodiesOpts{})
	opts := collector.Options{
		Client:       cl,
		Catalog:      func() []backstage.Component { return comps },
		Log:          store.NewMemory(),
		PollInterval: interval,
		Backfill:     backfill,
		Logger:       log.NewNopLogger(),
		OnPublish:    bodies.Warm,
		WebhookQueue: webhookQueue,

		ReadAnnotations: annotations,
	}
	for _, fn := range tweak {
		fn(&opts)
	}
	r.log = &recordingLog{Log: opts.Log}
	opts.Log = r.log
	c, err := collector.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	r.c = c
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.HealthCollector())
	r.scrape = exposition.NewHandler(c.Snapshot, reg, exposition.HandlerOpts{Bodies: bodies})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- c.Run(ctx) }()
	return r
}

func (r *running) stop(t *testing.T) {
	r.cancel()
	if err := <-r.done; err != nil {
		t.Errorf("collector Run: %v", err)
	}
}

// waitAppends sleeps in fake time until the log saw n appends; a day of fake time without is fatal.
func (r *running) waitAppends(t *testing.T, n int, step time.Duration) appendEvent {
	t.Helper()
	deadline := time.Now().Add(7 * day)
	for {
		if ev := r.log.events(); len(ev) >= n {
			return ev[n-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no poll cycle stored anything for a week of fake time (%d appends, want %d)", len(r.log.events()), n)
		}
		time.Sleep(step)
	}
}

func countRoutes(reqs []apiRequest) map[string]int {
	out := map[string]int{}
	for _, r := range reqs {
		out[r.route]++
	}
	return out
}

func countKinds(reqs []apiRequest) map[string]int {
	out := map[string]int{}
	for _, r := range reqs {
		out[r.kind]++
	}
	return out
}

func countStatus(reqs []apiRequest, status int) int {
	n := 0
	for _, r := range reqs {
		if r.status == status {
			n++
		}
	}
	return n
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return math.Inf(1)
	}
	return a / b
}

// TestEconomy measures the API economy of the real collector and client against the fake
// Buildkite API in fake time: backfills under the per-user limit, steady-state requests per
// cycle against the naive poller, and freshness. Its checks hold at any scale; the figures go to
// -out.
func TestEconomy(t *testing.T) {
	scale, cycles := *flagScale, *flagCycles
	if scale == 0 {
		scale = 0.01
		if cycles == 0 {
			cycles = 20
		}
	}
	if cycles == 0 {
		cycles = 240
	}
	m := issueScale(scale, *flagDays)
	var windows []time.Duration
	for _, d := range []int{30, 90} {
		if d <= m.Days {
			windows = append(windows, time.Duration(d)*day)
		}
	}
	if len(windows) == 0 {
		windows = []time.Duration{time.Duration(m.Days) * day}
	}
	figs := newFigures(*flagOut)
	defer func() {
		if err := figs.flush(); err != nil {
			t.Error(err)
		}
	}()

	bscale := *flagBackfillScale
	if bscale == 0 {
		bscale = scale
	}
	bm := issueScale(bscale, *flagDays)
	f := buildkitetest.New() // Buildkite's limits: 200/min per organization, 50/min per user
	began := time.Now()
	ds := bm.load(f, epoch, windows...)
	comps := bm.components()
	t.Logf("backfill organization: %v: %d builds, %d running at the end of history; loaded in %v", bm, ds.builds, ds.openOrg, time.Since(began).Round(time.Millisecond))
	figs.info("dataset", "backfill organization: pipelines", float64(bm.Pipelines), "", fmt.Sprintf("scale %g: %d annotated (one component each)", bscale, bm.Annotated))
	figs.info("dataset", "backfill organization: builds", float64(ds.builds), "builds", fmt.Sprintf("%.0f/day over %d days, Poisson arrivals, uniform over pipelines", bm.BuildsPerDay, bm.Days))
	figs.info("dataset", "backfill organization: failed builds retried once finished", float64(ds.retried), "builds",
		fmt.Sprintf("a third of the failures (9%% of builds); %d failed builds in annotated pipelines over the history", ds.annFailed))

	// The backfills only read the fake: they run side by side, one bubble each.
	t.Run("backfill", func(t *testing.T) {
		for i, w := range windows {
			t.Run(fmt.Sprintf("%dd", w/day), func(t *testing.T) {
				t.Parallel()
				cpu := cputime.Process()
				synctest.Test(t, func(t *testing.T) {
					checkEpoch(t)
					r := startCollector(t, f, comps, w, fmt.Sprintf("bkua_backfill_%d", i))
					backfill(t, figs, ds, r, w, bscale)
					r.stop(t)
				})
				t.Logf("process CPU while this bubble ran: %v", (cputime.Process() - cpu).Round(time.Millisecond))
			})
		}
	})
	if err := figs.flush(); err != nil {
		t.Error(err)
	}
	if bscale != scale {
		f, ds, comps = nil, nil, nil
		runtime.GC()
		f = buildkitetest.New()
		began = time.Now()
		ds = m.load(f, epoch)
		comps = m.components()
	}
	t.Logf("steady-state organization: %v: %d builds, %d running at the end of history; loaded in %v", m, ds.builds, ds.openOrg, time.Since(began).Round(time.Millisecond))
	figs.info("dataset", "steady-state organization: pipelines", float64(m.Pipelines), "", fmt.Sprintf("scale %g: %d annotated (one component each)", scale, m.Annotated))
	figs.info("dataset", "steady-state organization: builds", float64(ds.builds), "builds", fmt.Sprintf("%.0f/day over %d days; %d failed builds retried once finished", m.BuildsPerDay, m.Days, ds.retried))
	// The steady state changes the fake, so it runs last, with a collector of its own whose
	// backfill is short: requests per cycle do not depend on how much history is stored.
	cpu := cputime.Process()
	synctest.Test(t, func(t *testing.T) {
		checkEpoch(t)
		r := startCollector(t, f, comps, steadyBackfill, "bkua_steady")
		steadyState(t, figs, f, ds, r, cycles)
		r.stop(t)
		naive(t, figs, f, comps, m)
	})
	t.Logf("steady state and naive baseline: %v of CPU", (cputime.Process() - cpu).Round(time.Millisecond))
}

// steadyBackfill is the history the steady-state collector reads first.
const steadyBackfill = day

func checkEpoch(t *testing.T) {
	if !time.Now().Equal(epoch) {
		t.Fatalf("the bubble starts at %v, not %v: the data set would not line up", time.Now(), epoch)
	}
}

// backfill waits for the first poll cycle, which reads window of history, and reports its cost.
func backfill(t *testing.T, all *figures, ds *dataset, r *running, w time.Duration, scale float64) {
	figs := newFigures("")
	defer all.merge(figs) // one section together, whatever runs beside it
	began := time.Now()
	ev := r.waitAppends(t, 1, 10*time.Second)
	reqs := r.api.requests()
	took := ev.at.Sub(began)
	days := int(w / day)
	sec := fmt.Sprintf("backfill %dd", days)
	if scale != 1 {
		sec += fmt.Sprintf(" (scale %g)", scale)
	}
	routes := countRoutes(reqs)
	limited, deep := countStatus(reqs, http.StatusTooManyRequests), countStatus(reqs, http.StatusBadRequest)
	// The data: every finished build of an annotated pipeline in the window, 100 a page, plus
	// one page of open builds.
	minPages := (ds.annFinished[w]+99)/100 + 1
	perPipeline := ds.annPipePages[w] + 1
	orgWide := pagesFor(ds.orgFinished[w]) + pagesFor(ds.openOrg)
	cheapest := min(perPipeline, orgWide)
	t.Logf("%s: %d requests %v (%d × 429, %d × 400) in %v of fake time; %d records; data pages %d, per pipeline %d, org-wide %d",
		sec, len(reqs), routes, limited, deep, took, ev.added, minPages, perPipeline, orgWide)

	figs.info(sec, "builds finished in the window", float64(ds.orgFinished[w]), "builds",
		fmt.Sprintf("%d of them in annotated pipelines", ds.annFinished[w]))
	figs.target(sec, "requests", float64(len(reqs)), "requests", "≤ 1.2 × data pages", float64(len(reqs)) <= 1.2*float64(minPages),
		fmt.Sprintf("org-wide %d, per pipeline %d, get build %d; finished-builds query %d, open-builds query %d", routes[buildkitetest.RouteOrgBuilds], routes[buildkitetest.RoutePipelineBuilds], routes[buildkitetest.RouteBuild], countKinds(reqs)["finished"], countKinds(reqs)["open"]))
	figs.info(sec, "data pages", float64(minPages), "pages", "⌈annotated builds finished in the window / 100⌉ + 1 page of open builds")
	figs.info(sec, "cheapest listing the API allows", float64(cheapest), "pages",
		fmt.Sprintf("min(per pipeline %d, org-wide %d); each + 1 page of open builds", perPipeline, orgWide))
	figs.target(sec, "requests / data pages", ratio(float64(len(reqs)), float64(minPages)), "×", "≤ 1.2", float64(len(reqs)) <= 1.2*float64(minPages), "")
	figs.info(sec, "requests / cheapest listing", ratio(float64(len(reqs)), float64(cheapest)), "×", "")
	figs.info(sec, fmt.Sprintf("simulated wall time at %.0f/min", *flagRPM), took.Minutes(), "min",
		"fake time from start to the first stored cycle, real client pacing and reserve, real fake rate limits")
	figs.info(sec, "wall time at the default 30/min (computed)", float64(len(reqs))/30, "min", "requests / 30")
	figs.target(sec, "429 responses", float64(limited), "responses", "0", limited == 0, "")
	figs.info(sec, "deployments stored", float64(ev.added), "records",
		fmt.Sprintf("%d finished builds and %d failures retried once finished, recovered from the listed jobs (no Get-a-build: the backfill lists jobs)", ds.annFinished[w], ds.annRetried[w]))
	if scale != 1 {
		// Pages and time grow linearly with the organization (same share of annotated
		// pipelines, same builds per pipeline); the ratios above do not change.
		figs.info(sec, "requests at the issue's scale (extrapolated)", float64(len(reqs))/scale, "requests", fmt.Sprintf("measured at scale %g, × %g", scale, 1/scale))
		figs.info(sec, fmt.Sprintf("wall time at %.0f/min at the issue's scale (extrapolated)", *flagRPM), took.Minutes()/scale, "min", fmt.Sprintf("measured at scale %g, × %g", scale, 1/scale))
	}

	if limited > 0 {
		t.Errorf("%s: %d requests were answered 429; the client should stay within the budget", sec, limited)
	}
	if want := ds.annFinished[w] + ds.annRetried[w]; ev.added != want {
		t.Errorf("%s stored %d deployments, want %d (every finished build of an annotated pipeline in the window, and the %d failures retried once finished)", sec, ev.added, want, ds.annRetried[w])
	}
}

// deploymentsKey is a buildkite_deployments_total series as the text exposition writes its labels.
func deploymentsKey(m orgModel, p int, env, state string) string {
	return fmt.Sprintf(`component=%q,environment=%q,pipeline=%q,state=%q`, componentName(p), env, m.Org+"/"+m.slug(p), state)
}

// scrapeDeployments serves /metrics (text 0.0.4) as the exporter does, and returns the
// buildkite_deployments_total series.
func scrapeDeployments(t *testing.T, r *running) map[string]float64 {
	t.Helper()
	rec := httptest.NewRecorder()
	r.scrape.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: status %d", rec.Code)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(rec.Body.Bytes()))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "buildkite_deployments_total{")
		if !ok {
			continue
		}
		labels, value, ok := strings.Cut(rest, "} ")
		if !ok {
			t.Fatalf("unexpected exposition line %q", sc.Text())
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			t.Fatalf("unexpected exposition line %q: %v", sc.Text(), err)
		}
		out[labels] = v
	}
	return out
}

// visibility is a finished build of an annotated pipeline waiting to show in /metrics.
type visibility struct {
	key      string
	want     float64 // the series' value once this build is counted
	finished time.Time
}

// steadyState keeps the organization building and measures requests per cycle and freshness.
func steadyState(t *testing.T, figs *figures, f *buildkitetest.Fake, ds *dataset, r *running, cycles int) {
	m := ds.model
	// The cycle right after the backfill catches up with the hours it took; nothing changed
	// meanwhile, so the live simulation starts after it.
	r.waitAppends(t, 2, time.Second)
	r.api.reset()
	// Steps fall half-way between whole seconds, where the poller's ticks are, so that a build
	// never finishes at the very instant a cycle lists builds.
	time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1500 * time.Millisecond)))
	simStart := time.Now()
	sim := newLiveSim(ds, f, simStart, pollInterval)
	counts := scrapeDeployments(t, r)
	expected := map[string]float64{}
	var waiting []visibility
	var fresh []time.Duration
	probes := 0
	var finishedAt []time.Time // every build finished, for the per-cycle target
	// Annotated builds whose outcome needs their jobs (Classifier.NeedsJobs): those that finished
	// failed, and those that finished after a retry (failing_at set).
	var failedAt, refinishedAt []time.Time
	appends := len(r.log.events())
	startAppends := appends
	for time.Since(simStart) < time.Duration(cycles)*pollInterval {
		time.Sleep(time.Second)
		done, err := sim.advance(time.Now())
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range done {
			if ev.probe {
				probes++
			}
			finishedAt = append(finishedAt, ev.at)
			if !ev.annotated {
				continue
			}
			if ev.state == buildkite.StateFailed {
				failedAt = append(failedAt, ev.at)
			}
			if ev.retried {
				refinishedAt = append(refinishedAt, ev.at)
			}
			k := deploymentsKey(m, ev.pipeline, ev.env, ev.state)
			if _, ok := expected[k]; !ok {
				expected[k] = counts[k]
			}
			expected[k]++
			waiting = append(waiting, visibility{key: k, want: expected[k], finished: ev.at})
		}
		synctest.Wait() // the collector is idle: between cycles, or waiting for its budget
		evs := r.log.events()
		if len(evs) == appends {
			continue
		}
		appends = len(evs)
		if len(waiting) == 0 {
			continue
		}
		// A cycle stored its records and published its snapshot without waiting on anything
		// after Append, so in fake time the series changed at the Append.
		published := evs[len(evs)-1].at
		counts = scrapeDeployments(t, r)
		kept := waiting[:0]
		for _, v := range waiting {
			if counts[v.key] >= v.want {
				fresh = append(fresh, published.Sub(v.finished))
			} else {
				kept = append(kept, v)
			}
		}
		waiting = kept
	}
	end := time.Now()
	// Every series whose deployments have all shown counts them exactly once: a failure recovered
	// from a retried build's jobs is the one counted when it failed, not a second one.
	final := scrapeDeployments(t, r)
	pending := map[string]bool{}
	for _, v := range waiting {
		pending[v.key] = true
	}
	for k, want := range expected {
		if !pending[k] && final[k] != want {
			t.Errorf("/metrics counts %v deployments as %s, want %v", final[k], k, want)
		}
	}
	reqs := r.api.requests()
	evs := r.log.events()[startAppends:]

	// Requests per cycle: those after the previous cycle's Append up to this cycle's.
	type cycleStat struct {
		requests, finished int
		took               time.Duration
		routes             map[string]int
	}
	var stats []cycleStat
	prev := simStart
	ri, fi := 0, 0
	for _, ev := range evs {
		cs := cycleStat{routes: map[string]int{}}
		var first time.Time
		for ; ri < len(reqs) && !reqs[ri].at.After(ev.at); ri++ {
			if first.IsZero() {
				first = reqs[ri].at
			}
			cs.requests++
			cs.routes[reqs[ri].route]++
			cs.routes["query "+reqs[ri].kind]++
		}
		for ; fi < len(finishedAt) && !finishedAt[fi].After(ev.at); fi++ {
			if finishedAt[fi].After(prev) {
				cs.finished++
			}
		}
		cs.took = ev.at.Sub(first)
		stats = append(stats, cs)
		prev = ev.at
	}
	if len(stats) <= warmup {
		t.Fatalf("only %d steady-state cycles ran", len(stats))
	}
	stats = stats[warmup:]
	var sumReq, maxReq, sumTarget, sumFinished, overTarget int
	var maxTook, sumTook time.Duration
	routes := map[string]int{}
	for _, cs := range stats {
		sumReq += cs.requests
		maxReq = max(maxReq, cs.requests)
		target := pagesFor(cs.finished) + 1
		sumTarget += target
		sumFinished += cs.finished
		if cs.requests > target {
			overTarget++
		}
		sumTook += cs.took
		maxTook = max(maxTook, cs.took)
		for k, v := range cs.routes {
			routes[k] += v
		}
	}
	n := float64(len(stats))
	meanReq := float64(sumReq) / n
	// The measured cycles run from the last warm-up cycle's Append to the last Append.
	from, to := evs[warmup-1].at, evs[len(evs)-1].at
	within := func(ts []time.Time) int {
		k := 0
		for _, at := range ts {
			if at.After(from) && !at.After(to) {
				k++
			}
		}
		return k
	}
	failed, refinished := within(failedAt), within(refinishedAt)
	gets := routes[buildkitetest.RouteBuild]
	meanTarget := float64(sumTarget) / n
	naiveReq := float64(m.Annotated)
	sec := "steady state"
	t.Logf("%s: %d cycles, %.2f requests/cycle (max %d, target %.2f, %d cycles over), routes %v, %.1f builds finished/cycle, cycle %v mean, %v max; %d failed deployments, %d finished after a retry, %d Get-a-build",
		sec, len(stats), meanReq, maxReq, meanTarget, overTarget, routes, float64(sumFinished)/n, sumTook/time.Duration(len(stats)), maxTook, failed, refinished, gets)
	figs.info(sec, "cycles measured", n, "cycles", fmt.Sprintf("poll interval %v, after %d warm-up cycles", pollInterval, warmup))
	figs.info(sec, "builds finished per cycle (org-wide)", float64(sumFinished)/n, "builds", "")
	figs.target(sec, "requests per cycle (mean)", meanReq, "requests", fmt.Sprintf("≤ pages of changed builds + 1 = %.2f", meanTarget), meanReq <= meanTarget,
		fmt.Sprintf("max %d; %d of %d cycles over; per cycle: finished builds %.2f, open builds %.2f, Get-a-build %.2f; org-wide %d, per pipeline %d, get build %d in total",
			maxReq, overTarget, len(stats), float64(routes["query finished"])/n, float64(routes["query open"])/n, float64(routes["query get"])/n,
			routes[buildkitetest.RouteOrgBuilds], routes[buildkitetest.RoutePipelineBuilds], routes[buildkitetest.RouteBuild]))
	figs.info(sec, "failed deployments", float64(failed), "deployments",
		fmt.Sprintf("annotated builds that finished failed in the measured cycles; %d builds finished again after a retry made once the build had finished (%d retries in all pipelines during the simulation, %d in annotated ones)",
			refinished, sim.retries, sim.annRetries))
	figs.info(sec, "Get-a-build requests per cycle (mean)", float64(gets)/n, "requests", fmt.Sprintf("%d in %d cycles; jobs with include_retried_jobs, for the builds Classifier.NeedsJobs names", gets, len(stats)))
	figs.info(sec, "Get-a-build requests per failed deployment", ratio(float64(gets), float64(failed)), "requests",
		fmt.Sprintf("%d requests / %d failed deployments; the builds that need jobs: %d failed + %d finished after a retry", gets, failed, failed, refinished))
	figs.info(sec, "Get-a-build requests per build that needs jobs", ratio(float64(gets), float64(failed+refinished)), "requests",
		fmt.Sprintf("1 would fetch each once; a build re-read in the %v overlap is fetched again", 2*time.Minute))
	figs.info(sec, "naive requests per cycle", naiveReq, "requests", "one first page per annotated pipeline")
	figs.info(sec, "naive / ours", ratio(naiveReq, meanReq), "×", "")
	figs.info(sec, "share of the per-user budget", 100*meanReq*float64(time.Minute/pollInterval)/50, "%", "requests per minute / 50")
	figs.info(sec, "share of the organization budget", 100*meanReq*float64(time.Minute/pollInterval)/200, "%", "requests per minute / 200")
	figs.info(sec, "cycle duration (mean)", (sumTook / time.Duration(len(stats))).Seconds(), "s", fmt.Sprintf("first request to stored records, fake time; max %v", maxTook))

	// Freshness: build finished → its deployment counted in /metrics.
	sorted := sortedDurations(fresh)
	bound := pollInterval + maxTook + time.Second
	sec = "freshness"
	t.Logf("%s: %d deployments, p50 %v, p95 %v, max %v; %d not yet visible at the end", sec, len(sorted),
		percentile(sorted, 50), percentile(sorted, 95), percentile(sorted, 100), len(waiting))
	figs.info(sec, "deployments observed", float64(len(sorted)), "deployments",
		fmt.Sprintf("annotated builds finished during the steady state, %d of them probes (one per interval, at a random moment)", probes))
	figs.info(sec, "p50", percentile(sorted, 50).Seconds(), "s", "")
	figs.info(sec, "p95", percentile(sorted, 95).Seconds(), "s", "")
	figs.target(sec, "max", percentile(sorted, 100).Seconds(), "s", fmt.Sprintf("≤ interval + cycle = %.1f", bound.Seconds()),
		percentile(sorted, 100) <= bound, "")
	if len(sorted) > 0 && percentile(sorted, 100) > bound {
		t.Errorf("a deployment took %v to show in /metrics, more than a poll interval plus the longest cycle (%v)", percentile(sorted, 100), bound)
	}
	for _, v := range waiting {
		if end.Sub(v.finished) > bound {
			t.Errorf("a deployment finished at %v (%v before the end) never showed in /metrics as %s ≥ %v", v.finished, end.Sub(v.finished), v.key, v.want)
		}
	}
	if meanReq >= naiveReq {
		t.Errorf("steady state costs %.1f requests per cycle, no fewer than the naive poller's %v", meanReq, naiveReq)
	}
}

// naive runs one cycle of the straightforward poller: the first page of 100 builds of every
// annotated pipeline, with the real client at the same pace.
func naive(t *testing.T, figs *figures, f *buildkitetest.Fake, comps []backstage.Component, m orgModel) {
	cl, api := newClient(t, f, "bkua_naive")
	began := time.Now()
	builds := 0
	for _, c := range comps {
		for _, p := range c.Pipelines {
			err := cl.ListPipelineBuilds(context.Background(), p.Org, p.Pipeline, buildkite.ListBuildsOptions{PerPage: 100}, func(page []buildkite.Build) error {
				builds += len(page)
				return buildkite.ErrStopPaging
			})
			if err != nil && !errors.Is(err, buildkite.ErrStopPaging) {
				t.Fatalf("naive poller: %v", err)
			}
		}
	}
	took := time.Since(began)
	reqs := api.requests()
	sec := "naive baseline"
	t.Logf("%s: %d requests, %d builds read, one cycle takes %v of fake time at %.0f/min", sec, len(reqs), builds, took, *flagRPM)
	figs.info(sec, "requests per cycle", float64(len(reqs)), "requests", "GET …/pipelines/{p}/builds?per_page=100, first page, per annotated pipeline")
	figs.info(sec, fmt.Sprintf("cycle duration at %.0f/min", *flagRPM), took.Minutes(), "min",
		"so its poll interval, and its freshness, cannot be shorter")
	figs.info(sec, "builds read per cycle", float64(builds), "builds", "")
	if len(reqs) != m.Annotated {
		t.Errorf("the naive cycle sent %d requests, want one per annotated pipeline (%d)", len(reqs), m.Annotated)
	}
}
