package backstage

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
)

// DefaultRefreshInterval is the default of --catalog.refresh-interval.
const DefaultRefreshInterval = 5 * time.Minute

// Snapshot is the catalog as of the last refresh. It is immutable: readers must not modify it, and
// the Watcher replaces it as a whole.
type Snapshot struct {
	// Components are sorted by Label; each pipeline belongs to at most one component. A source
	// whose last refresh failed contributes the components of its last good refresh.
	Components []Component
	// Problems are those of the last refresh, including the failures of sources.
	Problems []Problem
	// LastRefreshSuccess is true when every source was read in the last refresh.
	LastRefreshSuccess bool
	// LastSuccess is when every source was last read; zero before the first such refresh.
	LastSuccess time.Time
}

// Watcher keeps the catalog up to date: it reads its sources every interval and on demand (SIGHUP),
// keeps the last good result of each source when a refresh of it fails, and publishes an immutable
// Snapshot. A component removed from a source disappears at that source's next good refresh.
type Watcher struct {
	sources  []Source
	interval time.Duration
	logger   log.Logger

	mu     sync.Mutex // serialises refreshes and guards the fields below
	last   []*Result  // last good result per source, nil until the first
	logged map[Problem]bool

	snapshot atomic.Pointer[Snapshot]
	// loaded is closed once the first refresh has published a Snapshot, successful or not.
	loaded     chan struct{}
	loadedOnce sync.Once
	// ready is set once every source has been read successfully at least once.
	ready atomic.Bool
}

// NewWatcher returns a Watcher over sources, in precedence order (an entity defined in two sources
// is taken from the first; list files before the API). interval <= 0 means DefaultRefreshInterval.
// Each refresh must finish within interval: its sources are read with that deadline.
func NewWatcher(sources []Source, interval time.Duration, logger log.Logger) *Watcher {
	if interval <= 0 {
		interval = DefaultRefreshInterval
	}
	w := &Watcher{sources: sources, interval: interval, logger: logger, last: make([]*Result, len(sources)), loaded: make(chan struct{})}
	w.snapshot.Store(&Snapshot{})
	return w
}

// Loaded is closed once the first refresh has published a Snapshot (even a failed one, which
// holds the problems): a consumer that starts work from the catalog waits for it, so that it never
// mistakes the empty catalog before the first read for the real one. It does not mean that a
// catalog was read: use Ready for that.
func (w *Watcher) Loaded() <-chan struct{} { return w.loaded }

// Ready reports whether every source has been read successfully at least once, i.e. whether the
// Snapshot holds a real catalog (a /-/ready check). A Backstage that has answered only errors
// (5xx, 401, a redirect elsewhere) since the start, --catalog.file values that name only missing
// paths, or a file load that never finished within its deadline keep it false; problems with
// single entities or files do not. Once true it stays true: a later failed refresh keeps the last
// good catalog.
func (w *Watcher) Ready() bool { return w.ready.Load() }

// Snapshot returns the current catalog; never nil, safe for concurrent use.
func (w *Watcher) Snapshot() *Snapshot { return w.snapshot.Load() }

// Run refreshes once, then every interval until ctx is done.
func (w *Watcher) Run(ctx context.Context) {
	_ = w.Refresh(ctx) // failures are logged and exposed in the Snapshot
	t := time.NewTicker(w.interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = w.Refresh(ctx)
		}
	}
}

// Refresh reads every source now, within the refresh interval, and publishes the new Snapshot.
// It returns the failures of the sources that could not be read (the deadline passing included);
// their last good components stay in the Snapshot, or, before a source's first good read, what
// its failed read returned (the files read before the deadline). A refresh interrupted by ctx
// publishes nothing.
func (w *Watcher) Refresh(ctx context.Context) error {
	w.mu.Lock()
	defer w.mu.Unlock()

	rctx, cancel := context.WithTimeout(ctx, w.interval)
	defer cancel()
	results := make([]Result, len(w.sources))
	var errs []error
	for i, s := range w.sources {
		r, err := s.Load(rctx)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			kept := 0
			if w.last[i] != nil {
				kept = len(w.last[i].Components)
			}
			level.Error(w.logger).Log("msg", "Catalog source failed; keeping its last good components", "source", s, "kept_components", kept, "err", err)
			errs = append(errs, fmt.Errorf("%s: %w", s, err))
			results[i] = Result{Problems: r.Problems}
			if len(r.Problems) == 0 {
				results[i].Problems = []Problem{newProblem(ReasonBackstageAPI, s.String(), "", "%s", err.Error())}
			}
			if w.last[i] != nil {
				results[i].Components = w.last[i].Components
			} else {
				results[i].Components = r.Components
			}
			continue
		}
		w.last[i] = &r
		results[i] = r
	}
	merged := Merge(results...)

	prev := w.snapshot.Load()
	next := &Snapshot{
		Components:         merged.Components,
		Problems:           merged.Problems,
		LastRefreshSuccess: len(errs) == 0,
		LastSuccess:        prev.LastSuccess,
	}
	if next.LastRefreshSuccess {
		next.LastSuccess = time.Now()
	}
	w.logProblems(merged)
	if len(next.Components) != len(prev.Components) || len(next.Problems) != len(prev.Problems) {
		level.Info(w.logger).Log("msg", "Catalog refreshed", "components", len(next.Components), "problems", len(next.Problems), "success", next.LastRefreshSuccess)
	}
	w.snapshot.Store(next)
	if !slices.Contains(w.last, nil) {
		w.ready.Store(true)
	}
	w.loadedOnce.Do(func() { close(w.loaded) })
	return errors.Join(errs...)
}

// logProblems writes one line per problem: at warning level the first time it is seen, at debug
// level while it persists, so that a standing typo does not flood the log every refresh.
func (w *Watcher) logProblems(r Result) {
	logged := make(map[Problem]bool, len(r.Problems))
	for _, p := range r.Problems {
		l := level.Debug(w.logger)
		if !w.logged[p] {
			l = level.Warn(w.logger)
		}
		msg := "Skipping catalog entry"
		if p.Entity != "" {
			msg = "Skipping catalog entity"
		}
		l.Log("msg", msg, "reason", p.Reason, "source", p.Source, "entity", p.Entity, "problem", p.Message)
		logged[p] = true
	}
	for _, p := range r.Ignored {
		level.Debug(w.logger).Log("msg", "Ignoring annotated entity", "reason", p.Reason, "source", p.Source, "entity", p.Entity, "problem", p.Message)
	}
	w.logged = logged
}
