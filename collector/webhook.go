package collector

import (
	"context"
	"errors"
	"time"

	"github.com/go-kit/log/level"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// Webhook builds: package webhook hands the build of every build.* event of a linked pipeline to
// Offer, which queues it without waiting. One goroutine (runWebhooks) drains the queue, at most
// once per Options.WebhookCoalesce: it updates the running and awaiting-approval gauges from the
// builds' payloads, makes the records of finished builds exactly as a poll would (the same
// classifier and keys, so the store's deduplication makes a later poll count nothing twice),
// appends them durably, and publishes one snapshot for the whole window.
//
// The poll stays the truth. Gauge state made from webhooks is an overlay on the poll's listing
// of open builds: the next poll's commit replaces every overlay entry received before that poll
// started (its listing saw them), and keeps the later ones for the poll after. A finished build
// is remembered for a while, so that a late build.running of it is ignored rather than moving a
// gauge backwards in time.

const (
	// DefaultWebhookQueue bounds the builds waiting for the webhook goroutine; a burst beyond it
	// is dropped (and counted by the receiver): the next poll reads those builds.
	DefaultWebhookQueue = 4096
	// DefaultWebhookCoalesce is the shortest time between two publishes of webhook builds: the
	// builds of a burst within it are published together.
	DefaultWebhookCoalesce = 250 * time.Millisecond
	// maxOverlay bounds the webhook gauge entries of an organization between two polls; beyond
	// it builds wait for the poll.
	maxOverlay = 10000
	// finishedMemory is how long a finished build is remembered against out-of-order deliveries,
	// and maxFinishedMemory how many at most.
	finishedMemory    = time.Hour
	maxFinishedMemory = 50000
	// webhookFetchTimeout bounds the build fetch of one window.
	webhookFetchTimeout = time.Minute
)

// buildEvent is a queued webhook build.
type buildEvent struct {
	event, org string
	b          buildkite.Build
	received   time.Time
}

// overlayEntry is a build's state as its latest applicable delivery showed it.
type overlayEntry struct {
	b        buildkite.Build
	received time.Time
}

// finishedBuild is a build known finished: by a poll or a delivery.
type finishedBuild struct {
	finishedAt time.Time
	seen       time.Time
}

// Linked says whether the catalog of the latest poll cycle links <org>/<pipeline>. It reads a
// published map: the webhook handler calls it for every delivery.
func (c *Collector) Linked(org, pipeline string) bool {
	m := c.linked.Load()
	if m == nil {
		return false
	}
	_, ok := (*m)[org][pipeline]
	return ok
}

// Offer queues the build of a webhook build event; false when the queue is full or webhooks
// are not enabled (Options.WebhookQueue). It never blocks.
func (c *Collector) Offer(event, org string, b *buildkite.Build, received time.Time) bool {
	if c.events == nil {
		return false
	}
	select {
	case c.events <- buildEvent{event: event, org: org, b: *b, received: received}:
		return true
	default:
		return false
	}
}

// runWebhooks drains the queue until ctx ends. It throttles rather than waits: a build arriving
// after a quiet spell is applied and published at once, and the builds that arrive within the
// coalescing window after a publish (or within as long as that publish took, if longer) are
// applied together at its end. So an isolated delivery shows at once, a burst costs one publish
// per window, and publishing takes at most half of a core however many deliveries arrive.
func (c *Collector) runWebhooks(ctx context.Context) {
	var batch []buildEvent
	var lastEnd time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case ev := <-c.events:
			batch = append(batch[:0], ev)
		}
		gap := max(c.coalesce, time.Duration(c.lastPublishCost.Load()))
		if wait := time.Until(lastEnd.Add(gap)); wait > 0 {
			timer := time.NewTimer(wait)
		collect:
			for {
				select {
				case <-ctx.Done():
					timer.Stop()
					return
				case ev := <-c.events:
					batch = append(batch, ev)
				case <-timer.C:
					break collect
				}
			}
		}
		// What queued meanwhile goes with this window too.
	drain:
		for {
			select {
			case ev := <-c.events:
				batch = append(batch, ev)
			default:
				break drain
			}
		}
		c.applyWebhooks(ctx, batch)
		lastEnd = time.Now()
	}
}

// pendingFinish is a finished build of a window waiting for its records.
type pendingFinish struct {
	org       string
	pipelines map[string]backstage.Component
	b         buildkite.Build
	seen      bool // an earlier cycle or delivery saw it blocked
}

// applyWebhooks applies one window's builds and publishes once.
func (c *Collector) applyWebhooks(ctx context.Context, batch []buildEvent) {
	now := time.Now()
	var finishes []pendingFinish
	queued := map[string]bool{} // build id@finished_at, within this window
	changed := false
	c.mu.Lock()
	for i := range batch {
		ev := &batch[i]
		o := c.orgs[ev.org]
		if o == nil || !o.active || o.pipelines == nil {
			continue // not polled yet: the first poll reads it
		}
		if _, ok := o.pipelines[ev.b.PipelineSlug()]; !ok {
			continue // unlinked since the handler looked
		}
		if !c.overlayLocked(o, &ev.b, ev.received, now) {
			continue
		}
		changed = true
		if ev.b.Blocked {
			if _, ok := o.seenBlocked[ev.b.ID]; !ok {
				o.seenBlocked[ev.b.ID] = now
			}
		}
		// Records wait for the backfill like the backfill's own: its poll reads this build.
		if !ev.b.Finished() || !o.caughtUp || backfilling(o.wm) {
			continue
		}
		k := ev.b.ID + "@" + ev.b.FinishedAt.String()
		if queued[k] {
			continue
		}
		queued[k] = true
		_, seen := o.seenBlocked[ev.b.ID]
		finishes = append(finishes, pendingFinish{org: ev.org, pipelines: o.pipelines, b: ev.b, seen: seen})
	}
	for _, o := range c.orgs {
		if o.overlayDirty {
			o.live = c.liveLocked(o, now)
			o.overlayDirty = false
		}
	}
	c.mu.Unlock()
	if len(finishes) > 0 && c.recordWebhookFinishes(ctx, finishes) {
		changed = true
	}
	if changed {
		c.publishNow()
	}
}

// progress is how far a build's payload has come, for ordering deliveries: the latest of its
// timestamps, the finish of a blocked build excepted (unblocking clears it, and the build
// carries on).
func progress(b *buildkite.Build) time.Time {
	t := latest(b.CreatedAt.Time, latest(b.ScheduledAt.Time, latest(b.StartedAt.Time, b.FailingAt.Time)))
	if !b.Blocked {
		t = latest(t, b.FinishedAt.Time)
	}
	return t
}

// overlayLocked records b's payload in o's gauge overlay unless it is older than what is known
// of the build; it says whether it did. c.mu is held.
func (c *Collector) overlayLocked(o *orgState, b *buildkite.Build, received, now time.Time) bool {
	if o.overlay == nil {
		o.overlay = map[string]overlayEntry{}
	}
	if f, ok := o.finishedSeen[b.ID]; ok {
		// A finished build moves on only to a later finish (a retry finished again); a
		// non-finished payload of it is a late delivery, or a re-open the next poll lists.
		if !b.Finished() || b.FinishedAt.Before(f.finishedAt) {
			return false
		}
	}
	if old, ok := o.overlay[b.ID]; ok {
		switch {
		case old.b.Finished() && (!b.Finished() || b.FinishedAt.Before(old.b.FinishedAt.Time)):
			return false
		case !old.b.Finished() && !b.Finished() && progress(b).Before(progress(&old.b)):
			return false
		}
	} else if len(o.overlay) >= maxOverlay {
		return false
	}
	o.overlay[b.ID] = overlayEntry{b: *b, received: received}
	if b.Finished() {
		rememberFinished(o, b.ID, b.FinishedAt.Time, now)
	}
	o.overlayDirty = true
	return true
}

// rememberFinished notes that build id finished at t, as known at now.
func rememberFinished(o *orgState, id string, t, now time.Time) {
	if o.finishedSeen == nil {
		o.finishedSeen = map[string]finishedBuild{}
	}
	if f, ok := o.finishedSeen[id]; ok && !t.After(f.finishedAt) {
		return
	}
	if len(o.finishedSeen) >= maxFinishedMemory {
		for k, f := range o.finishedSeen {
			if now.Sub(f.seen) > finishedMemory {
				delete(o.finishedSeen, k)
			}
		}
		if len(o.finishedSeen) >= maxFinishedMemory {
			return
		}
	}
	o.finishedSeen[id] = finishedBuild{finishedAt: t, seen: now}
}

// liveLocked computes o's gauges: the poll's open builds, with the overlay's builds replacing
// theirs (a finished one removes it), classified as a poll classifies its open builds.
// c.mu is held.
func (c *Collector) liveLocked(o *orgState, now time.Time) map[deployment.EnvKey]deployment.Live {
	if len(o.overlay) == 0 {
		return o.pollLive
	}
	open := make([]buildkite.Build, 0, len(o.pollOpen)+len(o.overlay))
	for i := range o.pollOpen {
		b := &o.pollOpen[i]
		if _, ok := o.overlay[b.ID]; ok {
			continue
		}
		if f, ok := o.finishedSeen[b.ID]; ok && f.seen.After(o.pollStart) && !progress(b).After(f.finishedAt) {
			continue // a delivery since the listing says it finished
		}
		open = append(open, *b)
	}
	for _, e := range o.overlay {
		if !e.b.Finished() {
			open = append(open, e.b)
		}
	}
	return c.classifier().Classify(deployment.Input{Organization: o.name, Pipelines: o.pipelines, Open: open, Now: now}).Live
}

// reconcileOverlayLocked is the poll's commit replacing the overlay: entries received before
// the cycle started are in its listing; later ones stay for the next cycle. c.mu is held.
func reconcileOverlayLocked(o *orgState, f *fetched, cycleStart, now time.Time) {
	for id, e := range o.overlay {
		if e.received.Before(cycleStart) {
			delete(o.overlay, id)
		}
	}
	for i := range f.finished {
		rememberFinished(o, f.finished[i].ID, f.finished[i].FinishedAt.Time, cycleStart)
	}
	for id, fb := range o.finishedSeen {
		if now.Sub(fb.seen) > finishedMemory {
			delete(o.finishedSeen, id)
		}
	}
}

// maxWebhookJobs bounds the jobs kept for the poll; beyond it the poll fetches its own.
const maxWebhookJobs = 1000

// putWebhookJobs keeps the jobs fetched for a webhook's finish until the poll re-reads it.
func (c *Collector) putWebhookJobs(id string, e fetchedJobs) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.webhookJobs == nil {
		c.webhookJobs = map[string]fetchedJobs{}
	}
	if len(c.webhookJobs) >= maxWebhookJobs {
		for k, old := range c.webhookJobs {
			if time.Since(old.finishedAt) > overlap+time.Hour {
				delete(c.webhookJobs, k)
			}
		}
		if len(c.webhookJobs) >= maxWebhookJobs {
			return
		}
	}
	c.webhookJobs[id] = e
}

// takeWebhookJobs hands the poll the jobs a webhook fetched for build id, once.
func (c *Collector) takeWebhookJobs(id string) (fetchedJobs, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.webhookJobs[id]
	if ok {
		delete(c.webhookJobs, id)
	}
	return e, ok
}

// recordWebhookFinishes makes, stores and applies the records of finished builds, as a poll
// would: the jobs are fetched (one Get-a-build through the client's limiter) exactly when a poll
// would need them, the configuration in effect when each build finished classifies it, and the
// store's keys deduplicate against the poll. A build whose jobs cannot be read now is left to
// the poll. It says whether a record was new.
func (c *Collector) recordWebhookFinishes(ctx context.Context, finishes []pendingFinish) bool {
	ctx, cancel := context.WithTimeout(ctx, webhookFetchTimeout)
	defer cancel()
	byOrg := map[string][]pendingFinish{}
	for _, p := range finishes {
		byOrg[p.org] = append(byOrg[p.org], p)
	}
	var latestOK time.Time
	if now, ok := c.buildkiteNow(); ok {
		latestOK = now.Add(maxFutureSkew)
	}
	newRecords := false
	for _, org := range sortedKeys(byOrg) {
		ps := byOrg[org]
		builds := make([]buildkite.Build, 0, len(ps))
		for _, p := range ps {
			b := p.b
			b.Jobs = nil // build payloads carry none; a job event's build is not read here
			if c.classifier().NeedsJobs(&b, p.seen) || c.config().ApprovalTiming == config.ApprovalTimingAll {
				full, err := c.client.GetBuild(ctx, org, b.PipelineSlug(), b.Number, buildkite.GetBuildOptions{ExcludePipeline: true, IncludeRetriedJobs: true})
				switch {
				case err == nil && !full.FinishedAt.Equal(b.FinishedAt.Time):
					continue // finished again, or re-opened, since: the poll counts what it is now
				case err == nil:
					b.Jobs = full.Jobs
					if b.Jobs == nil {
						b.Jobs = []buildkite.Job{}
					}
					c.putWebhookJobs(b.ID, fetchedJobs{finishedAt: b.FinishedAt.Time, jobs: b.Jobs})
				case errors.Is(err, buildkite.ErrNotFound), errors.Is(err, buildkite.ErrBodyTooLarge):
					// As the poll does: the outcome counts from the build alone.
				default:
					level.Warn(c.logger).Log("msg", "Cannot read the jobs of a build a webhook reported finished; the next poll counts it", "organization", org,
						"pipeline", b.PipelineSlug(), "build", b.Number, "err", err)
					continue
				}
			}
			builds = append(builds, b)
		}
		if len(builds) == 0 {
			continue
		}
		anns, err := c.fetchAnnotations(ctx, org, builds)
		if err != nil {
			level.Warn(c.logger).Log("msg", "Cannot read the annotations of builds webhooks reported finished; the next poll counts them", "organization", org, "err", err)
			continue
		}
		res := c.classify(deployment.Input{
			Organization: org, Pipelines: ps[0].pipelines, Finished: builds, Now: time.Now(),
			CommitFirstSeen: c.commitFirstSeen, Latest: latestOK,
			Annotations: anns, Committed: c.committedFunc(),
		})
		if len(res.Records) == 0 && len(res.Commits) == 0 {
			continue
		}
		added, err := c.log.Append(store.Batch{Records: res.Records, CommitsFirstSeen: res.Commits})
		c.mu.Lock()
		if err != nil {
			c.storageErrors++
			c.mu.Unlock()
			level.Error(c.logger).Log("msg", "Storing deployments reported by webhooks failed; the next poll stores them", "organization", org, "records", len(res.Records), "err", err)
			continue
		}
		for k, t := range res.Commits {
			if old, ok := c.commits[k]; !ok || t.Before(old) {
				c.commits[k] = t
			}
		}
		o := c.orgs[org]
		for _, r := range added {
			c.agg.Apply(r)
			if o != nil {
				delete(o.seenBlocked, r.BuildID)
			}
		}
		c.rememberCommittedLocked(res.Records)
		if o != nil {
			c.noteAnnotationsLocked(org, o, res)
		}
		c.webhookRecords += uint64(len(added))
		c.mu.Unlock()
		if len(added) > 0 {
			newRecords = true
			level.Debug(c.logger).Log("msg", "Counted deployments reported by webhooks", "organization", org, "records", len(res.Records), "new_records", len(added))
		}
	}
	return newRecords
}
