package collector

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/exposition"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

const (
	testOrg      = "acme"
	testToken    = "bkua_test"
	testInterval = 30 * time.Second
)

// catalogVar is a catalog tests can change between poll cycles.
type catalogVar struct {
	mu    sync.Mutex
	comps []backstage.Component
}

func (v *catalogVar) get() []backstage.Component {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.comps)
}

func (v *catalogVar) set(c []backstage.Component) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.comps = c
}

// harness runs a Collector against the fake API in process. Create it inside a synctest bubble.
type harness struct {
	t       *testing.T
	fake    *buildkitetest.Fake
	log     store.Log
	catalog *catalogVar
	c       *Collector
	reg     *prometheus.Registry
	cancel  context.CancelFunc
	done    chan error
}

type harnessOpt func(*Options)

func withConfig(cfg *config.Config) harnessOpt { return func(o *Options) { o.Config = cfg } }
func withLog(l store.Log) harnessOpt           { return func(o *Options) { o.Log = l } }

func newTestClient(t testing.TB, f *buildkitetest.Fake) *buildkite.Client {
	t.Helper()
	cl, err := buildkite.NewClient(buildkite.Config{
		BaseURL:           buildkitetest.InProcessBaseURL,
		Token:             secret.Secret(testToken),
		RequestsPerMinute: math.Inf(1),
		HTTPClient:        &http.Client{Transport: f.Transport()},
		Logger:            log.NewNopLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return cl
}

func newFake() *buildkitetest.Fake {
	f := buildkitetest.New()
	f.SetToken(testToken, "read_builds", "read_pipelines")
	return f
}

// start builds the collector and runs it; the first poll cycle has ended when start returns.
func start(t *testing.T, f *buildkitetest.Fake, comps []backstage.Component, opts ...harnessOpt) *harness {
	t.Helper()
	h := &harness{t: t, fake: f, catalog: &catalogVar{comps: comps}, reg: prometheus.NewPedanticRegistry(), done: make(chan error, 1)}
	o := Options{
		Client:       newTestClient(t, f),
		Catalog:      h.catalog.get,
		Log:          store.NewMemory(),
		PollInterval: testInterval,
		Backfill:     30 * 24 * time.Hour,
		Logger:       log.NewNopLogger(),
	}
	for _, opt := range opts {
		opt(&o)
	}
	h.log = o.Log
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	h.c = c
	h.reg.MustRegister(c.HealthCollector())
	ctx, cancel := context.WithCancel(t.Context())
	h.cancel = cancel
	go func() { h.done <- c.Run(ctx) }()
	waitIdle()
	t.Cleanup(h.stop)
	return h
}

// waitIdle waits until every goroutine of the bubble is blocked: the poll cycle has ended.
func waitIdle() { synctestWait() }

// next advances fake time by one poll interval and waits for the cycle to end.
func (h *harness) next() {
	time.Sleep(testInterval)
	waitIdle()
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

// gatherer is what /metrics serves: the health collector's registry and the latest snapshot's
// deployment families.
func (h *harness) gatherer() prometheus.Gatherer {
	return prometheus.Gatherers{h.reg, exposition.NewGatherer(h.c.Snapshot())}
}

// metrics gathers what /metrics serves into "name{label=value,...}" → value; histograms appear
// as name_count and name_sum, buckets as name_bucket{...,le=...}.
func (h *harness) metrics() map[string]float64 {
	h.t.Helper()
	return gather(h.t, h.gatherer())
}

func gather(t testing.TB, g prometheus.Gatherer) map[string]float64 {
	t.Helper()
	if _, err := g.Gather(); err != nil {
		t.Fatalf("Gather: %v", err)
	}
	return gatherOf(g)
}

// gatherOf is gather for a Gatherer known to succeed.
func gatherOf(g prometheus.Gatherer) map[string]float64 {
	mfs, _ := g.Gather()
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := labelString(m.GetLabel())
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				hh := m.GetHistogram()
				out[mf.GetName()+"_count"+labels] = float64(hh.GetSampleCount())
				out[mf.GetName()+"_sum"+labels] = hh.GetSampleSum()
				for _, b := range hh.GetBucket() {
					if math.IsInf(b.GetUpperBound(), 1) {
						continue // implicit in the registry's histograms, explicit in parsed text; _count says it
					}
					out[mf.GetName()+"_bucket"+labelString(m.GetLabel(), "le", fmt.Sprint(b.GetUpperBound()))] = float64(b.GetCumulativeCount())
				}
			case dto.MetricType_COUNTER:
				out[mf.GetName()+labels] = m.GetCounter().GetValue()
			default:
				out[mf.GetName()+labels] = m.GetGauge().GetValue()
			}
		}
	}
	return out
}

func labelString(ls []*dto.LabelPair, extra ...string) string {
	var parts []string
	for _, l := range ls {
		parts = append(parts, l.GetName()+"="+l.GetValue())
	}
	for i := 0; i+1 < len(extra); i += 2 {
		parts = append(parts, extra[i]+"="+extra[i+1])
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// series formats a metric key as gather does: series("x", "b", "2", "a", "1") = "x{a=1,b=2}".
func series(name string, kv ...string) string {
	var parts []string
	for i := 0; i+1 < len(kv); i += 2 {
		parts = append(parts, kv[i]+"="+kv[i+1])
	}
	sort.Strings(parts)
	return name + "{" + strings.Join(parts, ",") + "}"
}

// expect checks that every series in want has its value, and that series listed with value
// absent (NaN) are not exported.
func expect(t *testing.T, got map[string]float64, want map[string]float64) {
	t.Helper()
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range want {
			if !yield(k) {
				return
			}
		}
	}) {
		w := want[k]
		g, ok := got[k]
		switch {
		case math.IsNaN(w) && ok:
			t.Errorf("%s = %v, want it absent", k, g)
		case math.IsNaN(w):
		case !ok:
			t.Errorf("%s is missing, want %v", k, w)
		case g != w:
			t.Errorf("%s = %v, want %v", k, g, w)
		}
	}
}

var absent = math.NaN()

// filter returns the series of got whose key starts with prefix.
func filter(got map[string]float64, prefix string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range got {
		if strings.HasPrefix(k, prefix) {
			out[k] = v
		}
	}
	return out
}

func ts(t time.Time) buildkite.Timestamp { return buildkite.Timestamp{Time: t.UTC()} }

func sha(n int) string { return fmt.Sprintf("%040x", n) }

func component(name string, pipelines ...string) backstage.Component {
	c := backstage.Component{Name: name, Namespace: "default", Label: name, Ref: "component:default/" + name, Owner: "team-" + name}
	for _, p := range pipelines {
		c.Pipelines = append(c.Pipelines, backstage.PipelineRef{Org: testOrg, Pipeline: p})
	}
	return c
}

// finished returns a build created at created, started a minute later and finished d after that.
func finished(created time.Time, d time.Duration, state string, md map[string]string) buildkite.Build {
	return buildkite.Build{
		State: state, Commit: sha(int(created.Unix())), Branch: "main", MetaData: md,
		CreatedAt: ts(created), StartedAt: ts(created.Add(time.Minute)), FinishedAt: ts(created.Add(time.Minute + d)),
	}
}

func deployments(comp, env, pipeline, state string) string {
	return series("buildkite_deployments_total", "component", comp, "environment", env, "pipeline", testOrg+"/"+pipeline, "state", state)
}
