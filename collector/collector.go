// Package collector follows the builds of the pipelines that Backstage components name, turns
// them into deployment outcomes, stores them in the deployment log and serves them as Prometheus
// metrics.
//
// Data flow: a poller per organization fetches what changed since the stored watermark,
// classifies builds into store.Records, appends them to the store.Log (which returns the records
// that were new), applies only those to an in-memory aggregate and publishes an immutable snapshot
// of const metrics. Collect only sends that snapshot: scrapes never call the Buildkite API. At
// start the aggregate is rebuilt from the log (compacted base, then the records in append order),
// so counters continue where they were.
package collector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// Client is the part of *buildkite.Client the poller uses.
type Client interface {
	ListOrganizationBuilds(ctx context.Context, org string, opts buildkite.ListBuildsOptions, visit func(page []buildkite.Build) error) error
	ListPipelineBuilds(ctx context.Context, org, pipeline string, opts buildkite.ListBuildsOptions, visit func(page []buildkite.Build) error) error
	GetBuild(ctx context.Context, org, pipeline string, number int, opts buildkite.GetBuildOptions) (*buildkite.Build, error)
}

var _ Client = (*buildkite.Client)(nil)

// Options configure a Collector.
type Options struct {
	Client Client
	// Catalog returns the current components; it is called once per poll cycle.
	Catalog func() []backstage.Component
	Log     store.Log
	// Config is the classification and SLO configuration; nil means config.Default().
	Config *config.Config
	// PollInterval is the time between poll cycles (--poll.interval).
	PollInterval time.Duration
	// Backfill is how much history the first start reads (--history.backfill); 0 reads none.
	Backfill time.Duration
	// Retention compacts records that finished longer ago than this into the log's summary
	// (--storage.retention); 0 never compacts.
	Retention time.Duration
	Logger    log.Logger
	// Registerer, when set, gets the Collector registered.
	Registerer prometheus.Registerer
	// EncodedOnly is for a Collector served only through Handler (the exporter's /metrics): each
	// snapshot is rendered straight into its gzipped text exposition, without const metrics or
	// dto objects. At 10,000 components those are over a million series and several hundred MiB
	// at peak. Collect then sends nothing.
	EncodedOnly bool
}

// Collector polls Buildkite and serves the deployment metrics.
type Collector struct {
	client       Client
	catalog      func() []backstage.Component
	log          store.Log
	cfg          *config.Config
	cls          classifier
	pollInterval time.Duration
	backfill     time.Duration
	retention    time.Duration
	logger       log.Logger

	snap atomic.Pointer[snapshot]
	// served is set once Handler was asked for: snapshots are then encoded when published.
	served      atomic.Bool
	encodedOnly bool
	// cyclePublished is set once the snapshot of a completed poll cycle is published.
	cyclePublished atomic.Bool
	// maxPages is how deep a listing pages before it narrows its time window; lowered when the
	// API refuses a shallower page than maxPagesPerSlice.
	maxPages atomic.Int32

	mu            sync.Mutex // guards the fields below
	agg           *aggregate
	commits       map[string]time.Time // store.CommitKey → first created_at seen
	orgs          map[string]*orgState
	storageErrors uint64
	started       bool // replay done and a first poll cycle ended
	loggedUnknown map[string]bool
	lastCompact   time.Time
	comps         []backstage.Component // the catalog of the latest cycle
}

var _ prometheus.Collector = (*Collector)(nil)

// New validates opts and returns a Collector that serves an empty snapshot until Run has replayed
// the log.
func New(opts Options) (*Collector, error) {
	switch {
	case opts.Client == nil:
		return nil, errors.New("collector: no Buildkite client")
	case opts.Catalog == nil:
		return nil, errors.New("collector: no catalog")
	case opts.Log == nil:
		return nil, errors.New("collector: no deployment log")
	case opts.PollInterval <= 0:
		return nil, fmt.Errorf("collector: poll interval must be positive, got %s", opts.PollInterval)
	case opts.Backfill < 0:
		return nil, fmt.Errorf("collector: history backfill must not be negative, got %s", opts.Backfill)
	case opts.Retention < 0:
		return nil, fmt.Errorf("collector: storage retention must not be negative, got %s", opts.Retention)
	case opts.Retention > 0 && opts.Retention < opts.Backfill:
		return nil, fmt.Errorf("collector: storage retention %s is shorter than the history backfill %s; backfilled deployments would be compacted at once", opts.Retention, opts.Backfill)
	}
	cfg := opts.Config
	if cfg == nil {
		cfg = config.Default()
	}
	logger := opts.Logger
	if logger == nil {
		logger = log.NewNopLogger()
	}
	c := &Collector{
		client:        opts.Client,
		catalog:       opts.Catalog,
		log:           opts.Log,
		cfg:           cfg,
		cls:           classifier{cfg},
		pollInterval:  opts.PollInterval,
		backfill:      opts.Backfill,
		retention:     opts.Retention,
		logger:        logger,
		agg:           newAggregate(),
		commits:       map[string]time.Time{},
		orgs:          map[string]*orgState{},
		loggedUnknown: map[string]bool{},
		encodedOnly:   opts.EncodedOnly,
	}
	c.snap.Store(&snapshot{})
	c.maxPages.Store(maxPagesPerSlice)
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(c); err != nil {
			return nil, fmt.Errorf("collector: registering metrics: %w", err)
		}
	}
	return c, nil
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect implements prometheus.Collector: it sends the latest snapshot and never blocks on polling.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.snap.Load().metrics {
		ch <- m
	}
}

// Ready reports whether every organization of the catalog has been polled successfully once.
func (c *Collector) Ready() bool {
	if !c.cyclePublished.Load() { // scrapes see a completed cycle once Ready says so
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, o := range c.orgs {
		if o.active && o.health.LastSuccess.IsZero() {
			return false
		}
	}
	return true
}

// compactEvery is how often the log is compacted while running (and once at start).
const compactEvery = 24 * time.Hour

// Run rebuilds the counters from the log, then polls every organization of the catalog every poll
// interval until ctx is done. It returns an error only when the log cannot be read at start;
// poll and storage failures are logged, counted and retried next cycle.
func (c *Collector) Run(ctx context.Context) error {
	if err := c.restore(); err != nil {
		return err
	}
	c.compact()
	t := time.NewTicker(c.pollInterval)
	defer t.Stop()
	for {
		c.pollAll(ctx)
		if time.Since(c.lastCompact) >= compactEvery {
			c.compact()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// restore loads watermarks, commits and the compacted base and replays the log.
func (c *Collector) restore() error {
	st, err := c.log.Load()
	if err != nil {
		return fmt.Errorf("loading the deployment log: %w", err)
	}
	agg, err := unmarshalAggregate(st.Base)
	if err != nil {
		return err
	}
	n := 0
	if err := c.log.Replay(func(r store.Record) error {
		agg.apply(r)
		n++
		return nil
	}); err != nil {
		return fmt.Errorf("replaying the deployment log: %w", err)
	}
	c.mu.Lock()
	c.agg = agg
	if st.CommitsFirstSeen != nil {
		c.commits = st.CommitsFirstSeen
	}
	for org, wm := range st.Watermarks {
		c.orgState(org).wm = wm
	}
	level.Info(c.logger).Log("msg", "Replayed the deployment log", "records", n, "organizations", len(st.Watermarks))
	s := c.snapshotLocked()
	c.mu.Unlock()
	c.publish(s)
	return nil
}

// compact folds records older than the retention into the log's summary. Counters do not change:
// the in-memory aggregate already holds them, and a restart reads the summary back.
func (c *Collector) compact() {
	c.lastCompact = time.Now()
	if c.retention <= 0 {
		return
	}
	cutoff := time.Now().Add(-c.retention)
	if err := c.log.Compact(cutoff, foldBase); err != nil {
		c.mu.Lock()
		c.storageErrors++
		c.mu.Unlock()
		level.Error(c.logger).Log("msg", "Compacting the deployment log failed; retrying in a day", "cutoff", cutoff, "err", err)
		return
	}
	level.Debug(c.logger).Log("msg", "Compacted the deployment log", "cutoff", cutoff)
}

// pollAll runs one cycle for every organization the catalog names, concurrently: a slow or
// failing organization does not stop the others. It then publishes a new snapshot.
func (c *Collector) pollAll(ctx context.Context) {
	comps := slices.Clone(c.catalog())
	byOrg := map[string]map[string]backstage.Component{} // org → pipeline slug → component
	for _, comp := range comps {
		for _, p := range comp.Pipelines {
			if byOrg[p.Org] == nil {
				byOrg[p.Org] = map[string]backstage.Component{}
			}
			byOrg[p.Org][p.Pipeline] = comp
		}
	}
	c.mu.Lock()
	c.comps = comps
	for org, o := range c.orgs {
		if _, ok := byOrg[org]; !ok {
			// Keep the watermark (stored anyway) but stop reporting an organization the
			// catalog no longer names.
			o.health = orgHealth{}
			o.active = false
			o.live = nil
		}
	}
	for org := range byOrg {
		c.orgState(org).active = true
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, org := range sortedKeys(byOrg) {
		wg.Go(func() { c.pollOrg(ctx, org, byOrg[org]) })
	}
	wg.Wait()
	c.mu.Lock()
	c.started = true
	s := c.snapshotLocked()
	c.mu.Unlock()
	c.publish(s)
	c.cyclePublished.Store(true)
}

// publish makes s the snapshot scrapes see. When the Collector is served through Handler, s is
// encoded first, here in the polling goroutine and outside c.mu, so that no scrape pays for it.
// An EncodedOnly Collector's snapshots are instead encoded as they are built (buildSnapshot, under
// c.mu), which takes less time than building the const metrics did.
// Callers publish one at a time: replay before the first cycle, then one cycle after another.
func (c *Collector) publish(s *snapshot) {
	if c.encodedOnly || c.served.Load() {
		s.encode(c.encodedOnly)
	}
	c.snap.Store(s)
}

// snapshotLocked renders a new snapshot; c.mu is held.
func (c *Collector) snapshotLocked() *snapshot {
	live := map[string]liveEnv{}
	health := map[string]orgHealth{}
	for org, o := range c.orgs {
		if !o.active {
			continue
		}
		health[org] = o.health
		for k, v := range o.live {
			l := live[k]
			l.Running += v.Running
			l.Awaiting += v.Awaiting
			l.RunningSince = earliest(l.RunningSince, v.RunningSince)
			l.AwaitingSince = earliest(l.AwaitingSince, v.AwaitingSince)
			live[k] = l
		}
	}
	s := buildSnapshot(snapshotInput{
		cfg: c.cfg, catalog: c.comps, agg: c.agg, live: live, orgs: health,
		storageErrors: c.storageErrors, started: c.started, encodedOnly: c.encodedOnly,
	})
	for _, env := range s.unknownEnvs {
		if !c.loggedUnknown[env] {
			c.loggedUnknown[env] = true
			level.Warn(c.logger).Log("msg", "Deployments use an environment name the alias table does not know; add it to environment_aliases in the config file if it is another name for a known environment", "environment", env)
		}
	}
	return s
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}

// orgState returns the state of org, creating it; c.mu is held.
func (c *Collector) orgState(org string) *orgState {
	o := c.orgs[org]
	if o == nil {
		o = &orgState{seenBlocked: map[string]time.Time{}, est: newCostEstimates()}
		c.orgs[org] = o
	}
	return o
}
