// Package collector is the poll loop: per organization of the catalog, every poll interval, it
// fetches what changed since the stored watermark (the query planner picks org-wide or
// per-pipeline listings), has package deployment classify the builds, commits the records to the
// deployment log and applies the new ones to the aggregate, then publishes an immutable
// snapshot.Snapshot for every surface to read. Scrapes never call the Buildkite API. At start the
// aggregate is rebuilt from the log (compacted base, then the records in append order), so
// counters continue where they were. Exporter health (buildkite_up, poll and storage metrics) is
// read live by HealthCollector.
package collector

import (
	"context"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// Client is the part of *buildkite.Client the poller uses.
type Client interface {
	ListBuildsSliced(ctx context.Context, org, pipeline string, opts buildkite.ListBuildsOptions, seen map[string]time.Time, visit func(*buildkite.Build)) error
	ListOrganizationBuilds(ctx context.Context, org string, opts buildkite.ListBuildsOptions, visit func(page []buildkite.Build) error) error
	GetBuild(ctx context.Context, org, pipeline string, number int, opts buildkite.GetBuildOptions) (*buildkite.Build, error)
	GetPipeline(ctx context.Context, org, slug string) (*buildkite.Pipeline, error)
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
	// OnPublish, when set, is called with every snapshot after it is published, in the polling
	// goroutine: the exposition encodes it there, so that no scrape pays for it.
	OnPublish func(*snapshot.Snapshot)
	// CatalogReady, when set, says whether every catalog source has been read successfully at
	// least once; until then buildkite_up is 0 (a poll of an empty or partial catalog proves
	// nothing) and Ready is false.
	CatalogReady func() bool
	// RequestsPerMinute is the client's request budget (--buildkite.requests-per-minute), for
	// the backfill's time estimate; 0: unknown.
	RequestsPerMinute float64
	// WebhookQueue, when positive, enables webhook builds (Offer): at most this many wait to
	// be applied. 0: webhooks off, Offer refuses everything.
	WebhookQueue int
	// WebhookCoalesce is the shortest time between two publishes of webhook builds; 0 is
	// DefaultWebhookCoalesce.
	WebhookCoalesce time.Duration
	// ReadAnnotations reads the annotations of finished deployments (--buildkite.read-annotations):
	// deployment-<env> contexts name their environment (see deployment.AnnotationContextPrefix).
	// One request per finish, live builds only. The client must implement ListAnnotations.
	ReadAnnotations bool
}

// Collector polls Buildkite and publishes deployment snapshots.
type Collector struct {
	client  Client
	catalog func() []backstage.Component
	log     store.Log
	// settings is the configuration and its classifier; SetConfig swaps them whole, so a
	// cycle reads one or the other, never half of each.
	settings     atomic.Pointer[settings]
	pollInterval time.Duration
	backfill     time.Duration
	retention    time.Duration
	logger       log.Logger
	onPublish    func(*snapshot.Snapshot)
	catalogReady func() bool
	// requestsPerMinute estimates how long a backfill takes.
	requestsPerMinute float64
	readAnnotations   bool

	snap atomic.Pointer[snapshot.Snapshot]
	// pubMu orders publishing: the poll, a reload and the webhook goroutine each build a
	// snapshot and publish it, and a newer must never be overwritten by an older.
	pubMu sync.Mutex
	// lastPublishCost is how long (ns) the last publish took, snapshot and OnPublish.
	lastPublishCost atomic.Int64
	// linked is the catalog of the latest cycle by organization and pipeline slug, for the
	// webhook handler (Linked).
	linked atomic.Pointer[map[string]map[string]backstage.Component]
	// events is the webhook queue; nil when webhooks are off.
	events   chan buildEvent
	coalesce time.Duration
	// cyclePublished is set once the snapshot of a completed poll cycle is published.
	cyclePublished atomic.Bool

	mu            sync.Mutex // guards the fields below
	agg           *deployment.Aggregate
	commits       map[string]time.Time // store.CommitKey → first created_at seen
	orgs          map[string]*orgState
	storageErrors uint64
	started       bool // replay done and a first poll cycle ended
	loggedUnknown map[string]bool
	lastCompact   time.Time
	comps         []backstage.Component // the catalog of the latest cycle
	// webhookRecords counts the records webhooks stored before a poll did.
	webhookRecords uint64
	// webhookJobs are the jobs the webhook goroutine fetched, by build id, for the poll's
	// fetchJobs: a finish counted from a webhook is not fetched again when the poll re-reads it.
	webhookJobs map[string]fetchedJobs
	// annCache holds the annotations read for finished builds, by build id, for both paths.
	annCache map[string]fetchedAnnotations
	// committed holds, by build id, the environments of the recent outcomes the log holds
	// (those a listing may read again), against which annotations read later are pinned.
	committed map[string]committedBuild
}

// New validates opts and returns a Collector that publishes an empty snapshot until Run has
// replayed the log.
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
		client:            opts.Client,
		catalog:           opts.Catalog,
		log:               opts.Log,
		pollInterval:      opts.PollInterval,
		backfill:          opts.Backfill,
		retention:         opts.Retention,
		logger:            logger,
		onPublish:         opts.OnPublish,
		catalogReady:      opts.CatalogReady,
		requestsPerMinute: opts.RequestsPerMinute,
		agg:               deployment.NewAggregate(),
		commits:           map[string]time.Time{},
		orgs:              map[string]*orgState{},
		loggedUnknown:     map[string]bool{},
		readAnnotations:   opts.ReadAnnotations,
	}
	if opts.WebhookQueue > 0 {
		c.events = make(chan buildEvent, opts.WebhookQueue)
	}
	c.coalesce = opts.WebhookCoalesce
	if c.coalesce <= 0 {
		c.coalesce = DefaultWebhookCoalesce
	}
	c.settings.Store(&settings{cfg: cfg, cls: deployment.NewClassifier(cfg)})
	c.snap.Store(&snapshot.Snapshot{})
	return c, nil
}

type settings struct {
	cfg *config.Config
	cls deployment.Classifier
	// from is when this configuration took effect (zero: at start); earlier is the one before
	// it, for builds that finished before from (see classify).
	from    time.Time
	earlier *settings
}

// maxConfigHistory bounds how many earlier configurations are kept for builds re-read after a
// reload; beyond it the oldest kept classifies everything older.
const maxConfigHistory = 16

func (c *Collector) config() *config.Config            { return c.settings.Load().cfg }
func (c *Collector) classifier() deployment.Classifier { return c.settings.Load().cls }

// SetConfig makes cfg the configuration of the next poll cycles and snapshots (a reload).
// Objectives apply to the snapshot, which is published at once. Environment aliases and the
// default environment apply to deployments that finish from now on: a build that finished
// before is classified as before whenever it is read again (the poll overlap, a backfill), so
// that a re-read never counts an outcome twice under two environment names. A nil cfg is
// config.Default().
func (c *Collector) SetConfig(cfg *config.Config) {
	if cfg == nil {
		cfg = config.Default()
	}
	old := c.settings.Load()
	next := &settings{cfg: cfg, cls: deployment.NewClassifier(cfg), from: time.Now(), earlier: old}
	n := 0
	for e := next; e != nil; e = e.earlier {
		if n++; n == maxConfigHistory {
			e.earlier = nil
		}
	}
	c.settings.Store(next)
	c.publishNow()
}

// Snapshot returns the latest published snapshot; never nil. It must not be modified.
func (c *Collector) Snapshot() *snapshot.Snapshot { return c.snap.Load() }

// Ready reports whether every organization of the catalog has been polled successfully once.
func (c *Collector) Ready() bool {
	if !c.cyclePublished.Load() { // scrapes see a completed cycle once Ready says so
		return false
	}
	if c.catalogReady != nil && !c.catalogReady() {
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
	if c.events != nil {
		var wg sync.WaitGroup
		defer wg.Wait()
		wctx, cancel := context.WithCancel(ctx)
		defer cancel()
		wg.Go(func() { c.runWebhooks(wctx) })
	}
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
	agg, err := deployment.UnmarshalAggregate(st.Base)
	if err != nil {
		return err
	}
	n := 0
	// The outcomes the next listings may read again, for the pin of annotations read later.
	var recent []store.Record
	_, annotations := c.annotationsOn()
	if err := c.log.Replay(func(r store.Record) error {
		agg.Apply(r)
		n++
		if wm, ok := st.Watermarks[r.Organization]; annotations && ok && !r.FinishedAt.Before(wm.FinishedFrom.Add(-store.MaxOverlap)) {
			recent = append(recent, store.Record{BuildID: r.BuildID, Environment: r.Environment, FinishedAt: r.FinishedAt})
		}
		return nil
	}); err != nil {
		return fmt.Errorf("replaying the deployment log: %w", err)
	}
	// Repacked: what the replay kept is scattered among its garbage (deployment.Aggregate.Repacked).
	agg = agg.Repacked()
	c.mu.Lock()
	c.agg = agg
	if st.CommitsFirstSeen != nil {
		c.commits = st.CommitsFirstSeen
	}
	for org, wm := range st.Watermarks {
		c.orgState(org).wm = wm
	}
	c.rememberCommittedLocked(recent)
	level.Info(c.logger).Log("msg", "Replayed the deployment log", "records", n, "organizations", len(st.Watermarks))
	c.mu.Unlock()
	c.publishNow()
	// The replay's garbage peaks at about three times what it keeps (a million records: 590 MiB
	// for 150). Given back now, once, rather than by the scavenger over the next minutes, while
	// a container's memory graph shows the peak as if it were the exporter's size.
	debug.FreeOSMemory()
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
	if err := c.log.Compact(cutoff, deployment.Fold); err != nil {
		c.mu.Lock()
		c.storageErrors++
		c.mu.Unlock()
		level.Error(c.logger).Log("msg", "Compacting the deployment log failed; retrying in a day", "cutoff", cutoff, "err", err)
		return
	}
	// The store pruned the first-seen times older than the cutoff; so does the copy in memory,
	// which would otherwise grow for ever. A lead time counted from a commit first seen longer
	// ago than the retention is not counted from that first build any more.
	c.mu.Lock()
	pruned := 0
	for k, t := range c.commits {
		if t.Before(cutoff) {
			delete(c.commits, k)
			pruned++
		}
	}
	c.mu.Unlock()
	level.Debug(c.logger).Log("msg", "Compacted the deployment log", "cutoff", cutoff, "commits_pruned", pruned)
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
	c.linked.Store(&byOrg)
	c.mu.Lock()
	c.comps = comps
	for org, o := range c.orgs {
		if _, ok := byOrg[org]; !ok {
			// Keep the watermark (stored anyway) but stop reporting an organization the
			// catalog no longer names.
			o.health = orgHealth{}
			o.active = false
			o.live, o.pollLive, o.pollOpen, o.pipelines, o.overlay = nil, nil, nil, nil, nil
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
	c.mu.Unlock()
	c.publishNow()
	c.cyclePublished.Store(true)
}

// publishNow renders a snapshot of the current state, makes it the snapshot every surface
// sees, then hands it to OnPublish. Publishers (the replay, each cycle, a reload, the webhook
// goroutine) take turns, so that snapshots are published in the order they were built.
func (c *Collector) publishNow() {
	c.pubMu.Lock()
	defer c.pubMu.Unlock()
	start := time.Now()
	c.mu.Lock()
	s := c.snapshotLocked()
	c.mu.Unlock()
	c.snap.Store(s)
	if c.onPublish != nil {
		c.onPublish(s)
	}
	c.lastPublishCost.Store(int64(time.Since(start)))
}

// snapshotLocked renders a new snapshot; c.mu is held.
func (c *Collector) snapshotLocked() *snapshot.Snapshot {
	live := map[deployment.EnvKey]deployment.Live{}
	for _, o := range c.orgs {
		if !o.active {
			continue
		}
		for k, v := range o.live {
			live[k] = live[k].Add(v)
		}
	}
	s := c.agg.Snapshot(deployment.SnapshotInput{
		Config: c.config(), Catalog: c.comps, Live: live, Polled: c.started, Taken: time.Now(),
	})
	s.PipelineProblems = c.pipelineProblemsLocked()
	for _, env := range s.UnknownEnvironments {
		if !c.loggedUnknown[env] {
			c.loggedUnknown[env] = true
			level.Warn(c.logger).Log("msg", "Deployments use an environment name the alias table does not know; add it to environment_aliases in the config file if it is another name for a known environment", "environment", env)
		}
	}
	return s
}

// orgState returns the state of org, creating it; c.mu is held.
func (c *Collector) orgState(org string) *orgState {
	o := c.orgs[org]
	if o == nil {
		o = &orgState{name: org, seenBlocked: map[string]time.Time{}, planner: newPlanner(), jobs: map[string]fetchedJobs{}, problems: newProblemState()}
		c.orgs[org] = o
	}
	return o
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
