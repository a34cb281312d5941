package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	versioncollector "github.com/prometheus/client_golang/prometheus/collectors/version"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/collector"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/exposition"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// quietClient is a Buildkite organization where nothing happens: the render and memory figures
// measure the collector's own cost, so its poll cycles must not wait on an API.
type quietClient struct{}

func (quietClient) ListBuildsSliced(context.Context, string, string, buildkite.ListBuildsOptions, map[string]time.Time, func(*buildkite.Build)) error {
	return nil
}

func (quietClient) ListOrganizationBuilds(context.Context, string, buildkite.ListBuildsOptions, func([]buildkite.Build) error) error {
	return nil
}

func (quietClient) GetBuild(_ context.Context, org, pipeline string, n int, _ buildkite.GetBuildOptions) (*buildkite.Build, error) {
	return nil, fmt.Errorf("build %s/%s#%d: %w", org, pipeline, n, buildkite.ErrNotFound)
}

// GetPipeline says every pipeline exists: the quiet organization has no build, and the
// existence check of a pipeline without deployments must not make problems of them.
func (quietClient) GetPipeline(_ context.Context, _, slug string) (*buildkite.Pipeline, error) {
	return &buildkite.Pipeline{Slug: slug, Name: slug}, nil
}

var _ collector.Client = quietClient{}

// Accept headers of the scrapers the render figures are measured for (as in
// exposition/handler_test.go).
const (
	// Prometheus 3.x with native histograms (scrape_protocols protobuf first).
	acceptProm3Protobuf = `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2`
	// Prometheus 3.x defaults: OpenMetrics 1.0.0 first.
	acceptProm3 = `application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.7,application/openmetrics-text;version=0.0.1;q=0.6,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.3`
	// Prometheus 2.42 defaults: OpenMetrics 1.0.0 first.
	acceptProm242 = `application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`
)

// bodyFormat is one body the exposition caches, and the scrape that asks for it.
type bodyFormat struct {
	name   string // protobuf, OpenMetrics 1.0.0, text 0.0.4
	short  string // for figure names
	accept string // a scraper's Accept header that negotiates it
	who    string // which scraper sends that header
}

// bodyFormats are the three bodies exposition.Bodies keeps, each asked for by the scraper that
// sends it; Warm encodes every one asked for within 15 minutes.
var bodyFormats = []bodyFormat{
	{"protobuf", "protobuf", acceptProm3Protobuf, "Prometheus 3.x, protobuf first"},
	{"OpenMetrics 1.0.0", "openmetrics", acceptProm3, "Prometheus 3.x default"},
	{"text 0.0.4", "text", "", "no Accept header"},
}

// exporter is a collector wired as main.go wires it: the deployment bodies of every snapshot
// warmed by the poller (Options.OnPublish = Bodies.Warm), /metrics served by exposition.NewHandler
// over the exporter's registries (version, Go and process collectors; catalog and health
// collectors), instrumented by promhttp.InstrumentMetricHandler. The catalog here is fixed, so the
// catalog collector reads a backstage.Snapshot made once.
type exporter struct {
	c       *collector.Collector
	bodies  *exposition.Bodies
	handler http.Handler
	// bodyOnly is the same /metrics with an empty exporter registry: the deployment body and
	// nothing else, as the previous encoder's figures were measured.
	bodyOnly http.Handler
	// coldHandler is handler with a body cache of its own, empty: its first scrape of a format
	// encodes the body, as the first scrape of a format nobody asked for in 15 minutes does.
	coldHandler func() http.Handler
	// registriesOnly is /metrics without the deployment body: the exporter's registries alone;
	// catalogOnly, the catalog collector alone (buildkite_component_info: a series per component).
	registriesOnly, catalogOnly http.Handler
	gate                        *publishGate
	stop                        func() error
	// start is how long Run took to publish its first poll cycle's snapshot (replay included);
	// set by waitFirstCycle.
	start time.Duration
	began time.Time
}

type exporterOpts struct {
	log      store.Log
	comps    []backstage.Component
	interval time.Duration
	logger   log.Logger
	// hold stops the poller after every publish (once Warm is done) until the harness
	// releases it: figures are then measured with no poll cycle running beside them.
	hold bool
	// webhookQueue enables the collector's webhook queue (collector.Options.WebhookQueue).
	webhookQueue int
}

// benchBody is the bodies' options the figures are measured with: as main.go with
// --metrics.native-histograms (protobuf carries both forms). Exemplars are always on; the
// _created lines of --metrics.created-timestamps are not (off by default).
var benchBody = exposition.BodyOptions{NativeHistograms: true}

// newBodies is a body cache as main.go makes it.
func newBodies() *exposition.Bodies {
	return exposition.NewBodies(exposition.BodiesOpts{ReleaseMemory: true, Body: benchBody})
}

// startExporter runs a collector over opts.log with quietClient.
func startExporter(o exporterOpts) (*exporter, error) {
	if o.logger == nil {
		o.logger = log.NewNopLogger()
	}
	e := &exporter{bodies: newBodies()} // as main.go
	e.gate = newPublishGate(e.bodies.Warm, o.hold)
	c, err := collector.New(collector.Options{
		Client:       quietClient{},
		Catalog:      func() []backstage.Component { return o.comps },
		Log:          o.log,
		PollInterval: o.interval,
		Logger:       o.logger,
		OnPublish:    e.gate.onPublish,
		WebhookQueue: o.webhookQueue,
	})
	if err != nil {
		return nil, err
	}
	e.c = c
	catalog := &backstage.Snapshot{Components: o.comps, LastRefreshSuccess: true, LastSuccess: time.Now()}
	reg := prometheus.NewRegistry()
	exporterReg := prometheus.NewRegistry()
	exporterReg.MustRegister(versioncollector.NewCollector("buildkite_exporter"))
	exporterReg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(collector.NewCatalogCollector(func() *backstage.Snapshot { return catalog }), c.HealthCollector())
	metrics := func(bodies *exposition.Bodies) http.Handler {
		return promhttp.InstrumentMetricHandler(exporterReg, exposition.NewHandler(c.Snapshot, prometheus.Gatherers{exporterReg, reg}, exposition.HandlerOpts{
			Logger: o.logger, MaxRequestsInFlight: 40, Bodies: bodies,
		}))
	}
	e.handler = metrics(e.bodies)
	e.coldHandler = func() http.Handler {
		return metrics(newBodies())
	}
	e.bodyOnly = exposition.NewHandler(c.Snapshot, prometheus.NewRegistry(), exposition.HandlerOpts{Bodies: e.bodies})
	none := func() *snapshot.Snapshot { return nil }
	e.registriesOnly = exposition.NewHandler(none, prometheus.Gatherers{exporterReg, reg}, exposition.HandlerOpts{})
	catalogReg := prometheus.NewRegistry()
	catalogReg.MustRegister(collector.NewCatalogCollector(func() *backstage.Snapshot { return catalog }))
	e.catalogOnly = exposition.NewHandler(none, catalogReg, exposition.HandlerOpts{})

	ctx, cancel := context.WithCancel(context.Background())
	exited := make(chan struct{})
	var runErr error
	e.began = time.Now()
	go func() { runErr = c.Run(ctx); close(exited) }()
	e.gate.exited = exited
	var once sync.Once
	e.stop = func() error {
		once.Do(func() {
			e.gate.close()
			cancel()
			<-exited
		})
		return runErr
	}
	return e, nil
}

// waitFirstCycle waits until the first poll cycle's snapshot is published (and warmed). With
// hold the poller then waits in OnPublish until release.
func (e *exporter) waitFirstCycle() (*snapshot.Snapshot, error) {
	if e.gate.hold {
		for {
			s, err := e.gate.wait(10 * time.Minute)
			if err != nil {
				e.stop()
				return nil, err
			}
			if s.Polled {
				e.start = time.Since(e.began)
				return s, nil
			}
			e.gate.release() // the snapshot of the replay, before the first cycle
		}
	}
	for !e.c.Ready() {
		select {
		case <-e.gate.exited:
			return nil, fmt.Errorf("collector stopped before its first cycle: %v", e.stop())
		case <-time.After(5 * time.Millisecond):
		}
	}
	e.start = time.Since(e.began)
	return e.c.Snapshot(), nil
}

// nextCycle lets the held poller go on and waits for its next published, warmed snapshot.
func (e *exporter) nextCycle() (*snapshot.Snapshot, error) {
	e.gate.release()
	return e.gate.wait(10 * time.Minute)
}

// publishGate is the collector's OnPublish: Bodies.Warm, as main.go wires it, then, when hold is
// set, a pause until the harness has looked at the snapshot.
type publishGate struct {
	warm      func(*snapshot.Snapshot)
	hold      bool
	published chan *snapshot.Snapshot
	resume    chan struct{}
	closed    chan struct{}
	closeOnce sync.Once
	exited    <-chan struct{} // closed when Run returned
}

func newPublishGate(warm func(*snapshot.Snapshot), hold bool) *publishGate {
	return &publishGate{warm: warm, hold: hold, published: make(chan *snapshot.Snapshot), resume: make(chan struct{}), closed: make(chan struct{})}
}

func (g *publishGate) onPublish(s *snapshot.Snapshot) {
	g.warm(s)
	if !g.hold {
		return
	}
	select {
	case g.published <- s:
	case <-g.closed:
		return
	}
	select {
	case <-g.resume:
	case <-g.closed:
	}
}

var errGateTimeout = errors.New("no snapshot published in time")

// wait returns the next snapshot published and warmed; the poller then waits until release.
func (g *publishGate) wait(timeout time.Duration) (*snapshot.Snapshot, error) {
	select {
	case s := <-g.published:
		return s, nil
	case <-g.exited:
		return nil, errors.New("the collector stopped")
	case <-time.After(timeout):
		return nil, errGateTimeout
	}
}

// release lets the poller, waiting after a publish, go on.
func (g *publishGate) release() {
	select {
	case g.resume <- struct{}{}:
	case <-g.closed:
	}
}

func (g *publishGate) close() { g.closeOnce.Do(func() { close(g.closed) }) }

// scrape serves one /metrics request with accept (empty: none) and gzip or not.
func scrape(h http.Handler, accept string, gz bool) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if gz {
		req.Header.Set("Accept-Encoding", "gzip")
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}
