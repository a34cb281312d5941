package collector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-kit/log/level"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// Deployment annotations (Options.ReadAnnotations, --buildkite.read-annotations): one
// GET …/builds/{number}/annotations per finish of a finished build of a linked pipeline, in the
// steady-state poll and for webhook finishes, never in a backfill (history builds cost a request
// each: about 59,000 for 30 days of the benchmark organization). Both paths share one cache by
// build id and finish, so a finish is read once whichever path sees it first, and the overlap
// re-reads it from the cache. The requests go through the client's limiter like every other.

// annotationReader is implemented by a client that lists build annotations (*buildkite.Client).
type annotationReader interface {
	ListAnnotations(ctx context.Context, org, pipeline string, number int, opts buildkite.ListAnnotationsOptions) ([]buildkite.Annotation, error)
}

var _ annotationReader = (*buildkite.Client)(nil)

const (
	// maxAnnotationCache bounds the cached annotation listings; beyond it a finish is read
	// again when the overlap lists it (a request, never a wrong count).
	maxAnnotationCache = 50000
	// annotationCacheAge is how long a cached listing is kept after its build finished: longer
	// than the overlap and the webhook window that may read the finish again.
	annotationCacheAge = overlap + time.Hour
	// maxCommitted bounds the builds whose committed environments are remembered.
	maxCommitted = 50000
)

// fetchedAnnotations are the annotations read for a build that finished at finishedAt.
type fetchedAnnotations struct {
	finishedAt time.Time
	anns       []buildkite.Annotation
}

// committedBuild is what the log holds of a recent build: the environments of its committed
// outcomes, sorted, and its latest committed finish.
type committedBuild struct {
	envs       []string
	finishedAt time.Time
}

// annotationsOn says whether annotations are read: the option is on and the client can.
func (c *Collector) annotationsOn() (annotationReader, bool) {
	if !c.readAnnotations {
		return nil, false
	}
	ar, ok := c.client.(annotationReader)
	return ar, ok
}

// fetchAnnotations returns the annotations of the finished deployments among builds, by build
// id, from the cache or one request each. A build whose annotations are gone (404) or too large
// to read is counted without them; another error is returned, and the caller retries later (the
// poll: next cycle, with the watermark where it was; a webhook: the poll).
func (c *Collector) fetchAnnotations(ctx context.Context, org string, builds []buildkite.Build) (map[string][]buildkite.Annotation, error) {
	ar, ok := c.annotationsOn()
	if !ok {
		return nil, nil
	}
	out := map[string][]buildkite.Annotation{}
	for i := range builds {
		b := &builds[i]
		if !deploymentFinish(b) {
			continue
		}
		c.mu.Lock()
		e, hit := c.annCache[b.ID]
		c.mu.Unlock()
		if hit && e.finishedAt.Equal(b.FinishedAt.Time) {
			out[b.ID] = e.anns
			continue
		}
		slug := b.PipelineSlug()
		anns, err := ar.ListAnnotations(ctx, org, slug, b.Number, buildkite.ListAnnotationsOptions{OmitBody: true})
		switch {
		case err == nil:
			out[b.ID] = anns
			c.putAnnotations(b.ID, fetchedAnnotations{finishedAt: b.FinishedAt.Time, anns: anns})
		case errors.Is(err, buildkite.ErrNotFound), errors.Is(err, buildkite.ErrBodyTooLarge), errors.Is(err, buildkite.ErrForbidden):
			level.Warn(c.logger).Log("msg", "Cannot read the annotations of a finished build; counting it without them", "organization", org,
				"pipeline", slug, "build", b.Number, "err", err)
			c.putAnnotations(b.ID, fetchedAnnotations{finishedAt: b.FinishedAt.Time})
		default:
			return nil, fmt.Errorf("reading the annotations of build %s/%s#%d: %w", org, slug, b.Number, err)
		}
	}
	return out, nil
}

// deploymentFinish says whether b is a finished build that may be a deployment outcome.
func deploymentFinish(b *buildkite.Build) bool {
	if !b.Finished() {
		return false
	}
	switch b.State {
	case buildkite.StatePassed, buildkite.StateFailed, buildkite.StateCanceled:
		return true
	}
	return false
}

func (c *Collector) putAnnotations(id string, e fetchedAnnotations) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.annCache == nil {
		c.annCache = map[string]fetchedAnnotations{}
	}
	if _, ok := c.annCache[id]; !ok && len(c.annCache) >= maxAnnotationCache {
		for k, old := range c.annCache {
			if time.Since(old.finishedAt) > annotationCacheAge {
				delete(c.annCache, k)
			}
		}
		if len(c.annCache) >= maxAnnotationCache {
			return
		}
	}
	c.annCache[id] = e
}

// committedFunc is the Input.Committed of a classification: the environments the log holds for
// a recent build. Nil when annotations are not read: then no environment rule can change
// between two reads of a build, and nothing needs pinning.
func (c *Collector) committedFunc() func(string) []string {
	if _, ok := c.annotationsOn(); !ok {
		return nil
	}
	return func(id string) []string {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.committed[id].envs
	}
}

// rememberCommittedLocked notes the environments of records the log now holds (new or already
// stored); c.mu is held.
func (c *Collector) rememberCommittedLocked(records []store.Record) {
	if _, ok := c.annotationsOn(); !ok {
		return
	}
	if c.committed == nil {
		c.committed = map[string]committedBuild{}
	}
	for _, r := range records {
		e, ok := c.committed[r.BuildID]
		if !ok && len(c.committed) >= maxCommitted {
			continue // the oldest are pruned at the next commit; this one is not pinned
		}
		if !slices.Contains(e.envs, r.Environment) {
			e.envs = append(slices.Clone(e.envs), r.Environment)
			slices.Sort(e.envs)
		}
		e.finishedAt = latest(e.finishedAt, r.FinishedAt)
		c.committed[r.BuildID] = e
	}
}

// pruneCommittedLocked forgets builds that finished before every listing's reach: horizon is
// the earliest watermark less store.MaxOverlap. c.mu is held.
func (c *Collector) pruneCommittedLocked(horizon time.Time) {
	for id, e := range c.committed {
		if e.finishedAt.Before(horizon) {
			delete(c.committed, id)
		}
	}
	for id, e := range c.annCache {
		if e.finishedAt.Before(horizon) || time.Since(e.finishedAt) > annotationCacheAge {
			delete(c.annCache, id)
		}
	}
}

// committedHorizonLocked is the earliest finish a listing may read again: the earliest
// watermark of the organizations less store.MaxOverlap. c.mu is held.
func (c *Collector) committedHorizonLocked() time.Time {
	var h time.Time
	for _, o := range c.orgs {
		if o.wm.FinishedFrom.IsZero() {
			continue
		}
		if t := o.wm.FinishedFrom.Add(-store.MaxOverlap); h.IsZero() || t.Before(h) {
			h = t
		}
	}
	return h
}
