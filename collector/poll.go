package collector

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-kit/log/level"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

const (
	// overlap is re-read before the watermark each cycle. The watermark is on Buildkite's clock
	// (see nextWatermark), so the exporter's clock skew needs no margin; what the overlap covers
	// is visibility lag: a build stamped finished_at = t that a listing does not show until some
	// time after t (the finish is processed asynchronously after the last job reports). That lag
	// is seconds; 2 minutes leaves a wide margin and costs 2 minutes of re-read builds a cycle: at
	// 20,000 builds a day about 28, so a 30 s cycle's finished-builds listing stays one page up to
	// about 57,000 builds a day (100 builds per 150 s). Builds re-opened by a job retry need no
	// overlap: they finish again with a new finished_at, after the watermark. Re-read outcomes are
	// recognised by their record key and not counted twice.
	overlap = 2 * time.Minute
	// perPage is the API's maximum page size.
	perPage = 100
	// maxPagesPerSlice bounds how deep a listing pages before it narrows its time window
	// (created_to) instead: the API refuses deep pages (reference §1).
	maxPagesPerSlice = 10
)

// openStates are the states of builds that have not finished; blocked (a filter-only state)
// lists the builds waiting on a block step, which keep state passed in their JSON.
var openStates = []string{
	buildkite.StateCreating, buildkite.StateScheduled, buildkite.StateRunning,
	buildkite.StateFailing, buildkite.StateCanceling, buildkite.StateBlocked,
}

// orgState is the poller's memory of one organization.
type orgState struct {
	active bool // named by the latest catalog
	health orgHealth
	wm     store.Watermark
	live   map[string]liveEnv // by envKey, from the latest successful cycle
	// seenBlocked holds the ids of builds a cycle saw waiting on a block step; when one of them
	// finishes, its jobs are fetched to time the approval (approval_timing: seen_blocked).
	seenBlocked map[string]time.Time
	est         costEstimates
}

// query kinds: each cycle runs one of each, org-wide or per pipeline.
const (
	queryFinished = "finished"
	queryOpen     = "open"
)

// costEstimates remember, per query kind, how many builds the previous cycles saw, org-wide and
// per annotated pipeline: a rate per second plus the builds the next listing will read again
// (the tail: finished within the overlap before the watermark) for finished builds, a level for
// open builds.
type costEstimates map[string]*costEstimate

type costEstimate struct {
	orgRate     float64 // -1 until an org-wide query (or a probe) measured it
	orgMeasured time.Time
	orgTail     float64
	pipeRate    map[string]float64
	pipeTail    map[string]float64
	// listedAt is when (local, monotonic) the listing that set the watermark listedWM started:
	// builds new since listedWM are those that finished since listedAt, whatever the clock skew.
	listedAt time.Time
	listedWM time.Time
}

// remeasureAfter: an org-wide cost measured longer ago is measured again (one probe page), so
// that an organization whose unrelated pipelines became quiet gets the cheap org-wide listing back.
const remeasureAfter = time.Hour

func newCostEstimates() costEstimates {
	return costEstimates{
		queryFinished: {orgRate: -1, pipeRate: map[string]float64{}, pipeTail: map[string]float64{}},
		queryOpen:     {orgRate: -1, pipeRate: map[string]float64{}, pipeTail: map[string]float64{}},
	}
}

func pages(n float64) int { return max(1, int(math.Ceil(n/perPage))) }

// stale says whether the org-wide cost is unknown or too old to choose by.
func (e *costEstimate) stale(now time.Time) bool {
	return e.orgRate < 0 || now.Sub(e.orgMeasured) > remeasureAfter
}

// choose returns whether the org-wide endpoint is expected to cost fewer pages than one listing
// per pipeline, and both estimates. fresh is the seconds of new builds the listing will read on
// top of the tails (1 for a level).
func (e *costEstimate) choose(pipelines []string, fresh float64, now time.Time) (orgWide bool, orgPages, pipePages int) {
	for _, p := range pipelines {
		pipePages += pages(e.pipeTail[p] + e.pipeRate[p]*fresh)
	}
	if e.stale(now) {
		// Never measured: try org-wide once when it can be cheaper at all.
		return len(pipelines) > 1, -1, pipePages
	}
	orgPages = pages(e.orgTail + e.orgRate*fresh)
	return orgPages < pipePages, orgPages, pipePages
}

// fresh is how many seconds of new finished builds a listing from wm reads: the time since the
// listing that set wm started, on the local monotonic clock, so skew does not enter; when that
// is not known (first cycle, a failed store), the span from wm to now across the two clocks.
func (e *costEstimate) fresh(wm, now time.Time) float64 {
	if !e.listedAt.IsZero() && e.listedWM.Equal(wm) {
		return max(0, now.Sub(e.listedAt).Seconds())
	}
	return max(0, now.Sub(wm).Seconds())
}

// probeEstimate estimates, from a full first page of an org-wide listing of the builds finished
// since from (newest created first), how many builds the whole listing holds and how many of them
// each annotated pipeline has: the page's builds were created at a rate of len(page)-1 over the
// span of their created_at, and the window runs from from to the newest timestamp on the page
// (both on Buildkite's clock).
func probeEstimate(page []buildkite.Build, slugs []string, from time.Time) (orgBuilds, window float64, pipeBuilds map[string]float64) {
	var oldest, newest time.Time
	counts := map[string]int{}
	for i := range page {
		b := &page[i]
		counts[b.PipelineSlug()]++
		if oldest.IsZero() || b.CreatedAt.Before(oldest) {
			oldest = b.CreatedAt.Time
		}
		for _, t := range []time.Time{b.CreatedAt.Time, b.FinishedAt.Time} {
			if t.After(newest) {
				newest = t
			}
		}
	}
	n := float64(len(page))
	span := max(newest.Sub(oldest).Seconds(), 1)
	window = max(newest.Sub(from).Seconds(), span, 1)
	orgBuilds = max(n, (n-1)/span*window)
	pipeBuilds = make(map[string]float64, len(slugs))
	for _, s := range slugs {
		pipeBuilds[s] = float64(counts[s]) * orgBuilds / n
	}
	return orgBuilds, window, pipeBuilds
}

// updateTails records, after a cycle that moved the watermark to wm, the builds of the listing
// that the next listing (from wm − overlap) will read again. An org-wide tail not measured this
// cycle is kept while the watermark stays, else estimated from the rate.
func (e *costEstimate) updateTails(l *listing, wm time.Time) {
	cut := wm.Add(-overlap)
	tail := map[string]float64{}
	for i := range l.builds {
		if !l.builds[i].FinishedAt.Before(cut) {
			tail[l.builds[i].PipelineSlug()]++
		}
	}
	for s := range e.pipeRate {
		e.pipeTail[s] = tail[s]
	}
	switch {
	case l.orgWide:
		n := 0
		for _, t := range l.orgFinished {
			if t >= cut.UnixNano() {
				n++
			}
		}
		e.orgTail = float64(n)
	case !e.listedWM.Equal(wm) && e.orgRate >= 0:
		e.orgTail = e.orgRate * overlap.Seconds()
	}
	e.listedAt, e.listedWM = l.started, wm
}

// cycle is what one poll of one organization gathered.
type cycle struct {
	records []store.Record
	commits map[string]time.Time
	live    map[string]liveEnv
	blocked map[string]bool // build ids seen blocked
}

// pollOrg runs one cycle for org, whose annotated pipelines map to components.
func (c *Collector) pollOrg(ctx context.Context, org string, pipelines map[string]backstage.Component) {
	start := time.Now()
	c.mu.Lock()
	o := c.orgState(org)
	wm := o.wm
	seenBlocked := make(map[string]bool, len(o.seenBlocked))
	for id := range o.seenBlocked {
		seenBlocked[id] = true
	}
	est := o.est
	c.mu.Unlock()

	// Only this goroutine uses est: pollAll runs one cycle per organization at a time.
	cy, newWM, err := c.fetchOrg(ctx, org, pipelines, wm, seenBlocked, est, start)
	elapsed := time.Since(start)
	if err != nil {
		c.mu.Lock()
		o.health.Polled, o.health.LastOK, o.health.LastDuration = true, false, elapsed
		o.health.Errors++
		c.mu.Unlock()
		if ctx.Err() == nil {
			level.Error(c.logger).Log("msg", "Polling the organization failed; keeping the last known state and retrying next cycle", "organization", org, "err", err)
		}
		return
	}
	slices.SortStableFunc(cy.records, func(a, b store.Record) int {
		if d := a.FinishedAt.Compare(b.FinishedAt); d != 0 {
			return d
		}
		return strings.Compare(a.Key, b.Key)
	})
	added, err := c.log.Append(store.Batch{
		Records:          cy.records,
		Watermarks:       map[string]store.Watermark{org: newWM},
		CommitsFirstSeen: cy.commits,
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	o.health.Polled, o.health.LastOK, o.health.LastDuration = true, true, elapsed
	o.health.LastSuccess = time.Now()
	o.live = cy.live
	now := time.Now()
	for id := range cy.blocked {
		if _, ok := o.seenBlocked[id]; !ok {
			o.seenBlocked[id] = now
		}
	}
	// Forget builds blocked so long ago they can no longer be awaiting approval.
	for id, t := range o.seenBlocked {
		if now.Sub(t) > 2*c.cfg.AwaitingApprovalMaxAge.Std() {
			delete(o.seenBlocked, id)
		}
	}
	if err != nil {
		c.storageErrors++
		level.Error(c.logger).Log("msg", "Storing deployments failed; serving what is known and retrying next cycle", "organization", org, "records", len(cy.records), "err", err)
		return
	}
	for k, t := range cy.commits {
		if old, ok := c.commits[k]; !ok || t.Before(old) {
			c.commits[k] = t
		}
	}
	o.wm = newWM
	for _, r := range added {
		c.agg.apply(r)
		delete(o.seenBlocked, r.BuildID)
	}
	level.Debug(c.logger).Log("msg", "Polled organization", "organization", org, "records", len(cy.records), "new_records", len(added), "duration", elapsed)
}

// fetchOrg lists what changed in org and classifies it. It does not touch collector state.
func (c *Collector) fetchOrg(ctx context.Context, org string, pipelines map[string]backstage.Component,
	wm store.Watermark, seenBlocked map[string]bool, est costEstimates, start time.Time,
) (*cycle, store.Watermark, error) {
	from := wm.FinishedFrom.Add(-overlap)
	if !wm.BackfillDone || wm.FinishedFrom.IsZero() {
		from = start.Add(-c.backfill)
		level.Info(c.logger).Log("msg", "Backfilling deployment history", "organization", org, "since", from)
	}
	slugs := sortedKeys(pipelines)
	// Jobs carry the block steps' timing. With seen_blocked the steady state fetches them only for
	// builds an earlier cycle saw blocked, which history never was: the backfill lists them with
	// their jobs instead, which costs bytes, not requests.
	backfilling := !wm.BackfillDone || wm.FinishedFrom.IsZero()
	withJobs := c.cfg.ApprovalTiming == config.ApprovalTimingAll ||
		(backfilling && c.cfg.ApprovalTiming == config.ApprovalTimingSeenBlocked)
	w := window{from: from, fresh: start.Sub(from).Seconds()}
	if !backfilling {
		w.fresh, w.newSince = est[queryFinished].fresh(wm.FinishedFrom, start), wm.FinishedFrom
	}
	listFinished := func(withJobs bool) (*listing, error) {
		return c.listBuilds(ctx, org, pipelines, slugs, queryFinished, est, w, buildkite.ListBuildsOptions{
			FinishedFrom:    from,
			ExcludeJobs:     !withJobs,
			ExcludePipeline: true,
		})
	}
	listed := time.Now()
	lf, err := listFinished(withJobs)
	if withJobs && errors.Is(err, buildkite.ErrBodyTooLarge) {
		// Pipelines with hundreds of jobs per build can make a page of builds with their jobs
		// larger than the response cap; the deployments matter more than their approval waits.
		level.Warn(c.logger).Log("msg", "Builds with their jobs exceed the response size cap; listing them without jobs, so their approval waits are not measured",
			"organization", org, "err", err)
		lf, err = listFinished(false)
	}
	if err != nil {
		return nil, wm, fmt.Errorf("listing builds finished since %s: %w", from.Format(time.RFC3339), err)
	}
	lf.started = listed
	finished := lf.builds
	newest := lf.newest
	if !backfilling {
		backfilled, err := c.backfillNewPipelines(ctx, org, slugs, wm.Pipelines, start)
		if err != nil {
			return nil, wm, err
		}
		for i := range backfilled {
			newest = latest(newest, backfilled[i].FinishedAt.Time)
		}
		finished = mergeBuilds(finished, backfilled)
	}
	old := wm.FinishedFrom
	if backfilling {
		old = time.Time{}
	}
	newWM := nextWatermark(old, newest, time.Since(listed), start, from)
	est[queryFinished].updateTails(lf, newWM)
	// Open builds older than twice the approval age are abandoned: neither running nor awaiting
	// approval in any sense the gauges report.
	lo, err := c.listBuilds(ctx, org, pipelines, slugs, queryOpen, est, window{fresh: 1}, buildkite.ListBuildsOptions{
		States:          openStates,
		CreatedFrom:     start.Add(-2 * c.cfg.AwaitingApprovalMaxAge.Std()),
		ExcludeJobs:     true,
		ExcludePipeline: true,
	})
	if err != nil {
		return nil, wm, fmt.Errorf("listing unfinished builds: %w", err)
	}
	open := lo.builds

	cy := &cycle{commits: map[string]time.Time{}, live: map[string]liveEnv{}, blocked: map[string]bool{}}
	// Commits first: a deployment's lead time counts from the earliest build of its commit,
	// which may be in this very batch.
	for _, set := range [][]buildkite.Build{finished, open} {
		for i := range set {
			b := &set[i]
			comp, ok := pipelines[b.PipelineSlug()]
			if !ok || !isCommit(b.Commit) || b.CreatedAt.IsZero() {
				continue
			}
			k := store.CommitKey(comp.Label, b.Commit)
			if t, ok := cy.commits[k]; !ok || b.CreatedAt.Before(t) {
				cy.commits[k] = b.CreatedAt.Time
			}
		}
	}
	for i := range open {
		b := &open[i]
		comp, ok := pipelines[b.PipelineSlug()]
		if !ok || b.Finished() {
			continue
		}
		c.observeOpen(cy, comp, b, start)
	}
	for i := range finished {
		b := &finished[i]
		slug := b.PipelineSlug()
		comp, ok := pipelines[slug]
		if !ok {
			continue
		}
		if b.Blocked {
			cy.blocked[b.ID] = true
		}
		state, ok := outcomeState(b)
		if !ok {
			continue
		}
		wait := -1.0
		switch c.cfg.ApprovalTiming {
		case config.ApprovalTimingAll:
			wait = approvalWait(b.Jobs)
		case config.ApprovalTimingSeenBlocked:
			if b.Jobs != nil { // listed with its jobs (backfill)
				wait = approvalWait(b.Jobs)
			} else if seenBlocked[b.ID] {
				full, err := c.client.GetBuild(ctx, org, slug, b.Number, buildkite.GetBuildOptions{ExcludePipeline: true})
				switch {
				case err == nil:
					wait = approvalWait(full.Jobs)
				case errors.Is(err, buildkite.ErrNotFound):
					// Deleted or no longer visible: count the deployment without the wait.
				default:
					return nil, wm, fmt.Errorf("fetching the jobs of build %s/%s#%d for its approval time: %w", org, slug, b.Number, err)
				}
			}
		}
		c.appendRecords(cy, org, comp, slug, b, state, wait)
	}
	return cy, store.Watermark{FinishedFrom: newWM, BackfillDone: true, Pipelines: slugs}, nil
}

// nextWatermark is how far a cycle has read, on Buildkite's clock: every build that finished
// before it has been listed. newest is the newest finished_at the cycle read and took how long
// its finished-builds listing ran. Pages read before a build finished do not show it, but it
// finished after the listing began, which was no later than newest − took on Buildkite's clock
// (newest was stamped before the listing ended); so newest − took is safe whatever the skew
// between the clocks. It never moves backwards and stays when nothing was read (fallback, the
// listing's finished_from, for a first cycle that read nothing).
//
// It is capped at the cycle's start on the exporter's clock. Buildkite never stamps a finish in
// its future, so with the exporter's clock ahead of Buildkite's (the skew that used to lose
// builds) the cap never applies; it does against timestamps in the future (test fixtures), and
// with the exporter's clock behind Buildkite's by more than the gap to the newest finish, where
// it makes the next cycle re-read that skew: more requests, never fewer builds.
func nextWatermark(old, newest time.Time, took time.Duration, start, fallback time.Time) time.Time {
	if newest.IsZero() {
		if old.IsZero() {
			return fallback
		}
		return old
	}
	wm := newest.Add(-took)
	if wm.After(start) {
		wm = start
	}
	return latest(old, wm)
}

func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// backfillNewPipelines reads the history of the pipelines annotated since the last cycle (in
// slugs, not in covered), one per-pipeline listing each, so that a component added to the catalog
// gets the same history window as those there at the first start. Outcomes read twice are
// stored once: records are keyed by build and finish time.
func (c *Collector) backfillNewPipelines(ctx context.Context, org string, slugs, covered []string, start time.Time) ([]buildkite.Build, error) {
	if covered == nil || c.backfill <= 0 {
		return nil, nil
	}
	var out []buildkite.Build
	for _, s := range slugs {
		if _, ok := slices.BinarySearch(covered, s); ok {
			continue
		}
		from := start.Add(-c.backfill)
		level.Info(c.logger).Log("msg", "Backfilling a newly annotated pipeline", "organization", org, "pipeline", s, "since", from)
		var builds []buildkite.Build
		err := c.sliced(ctx, buildkite.ListBuildsOptions{
			FinishedFrom:    from,
			ExcludeJobs:     c.cfg.ApprovalTiming == config.ApprovalTimingOff,
			ExcludePipeline: true,
		}, nil, func(o buildkite.ListBuildsOptions, visit func([]buildkite.Build) error) error {
			return c.client.ListPipelineBuilds(ctx, org, s, o, visit)
		}, func(b *buildkite.Build) { builds = append(builds, *b) })
		if err != nil {
			return nil, fmt.Errorf("backfilling newly annotated pipeline %s/%s: %w", org, s, err)
		}
		out = append(out, builds...)
	}
	return out, nil
}

// mergeBuilds appends the builds of more that a are missing (by id).
func mergeBuilds(a, more []buildkite.Build) []buildkite.Build {
	if len(more) == 0 {
		return a
	}
	seen := make(map[string]bool, len(a))
	for i := range a {
		seen[a[i].ID] = true
	}
	for _, b := range more {
		if !seen[b.ID] {
			seen[b.ID] = true
			a = append(a, b)
		}
	}
	return a
}

// appendRecords makes the records of one finished deployment build, one per environment.
func (c *Collector) appendRecords(cy *cycle, org string, comp backstage.Component, slug string, b *buildkite.Build, state string, wait float64) {
	lead := -1.0
	if state == statePassed {
		if t, ok := c.commitTime(cy, comp, b); ok {
			lead = max(0, b.FinishedAt.Sub(t).Seconds())
		}
	}
	for _, t := range c.cls.targets(b, slug) {
		cy.records = append(cy.records, store.Record{
			Key:                 store.Key(b.ID, b.FinishedAt.Time, t.Environment),
			Organization:        org,
			Pipeline:            org + "/" + slug,
			Component:           comp.Label,
			Environment:         t.Environment,
			State:               state,
			BuildID:             b.ID,
			BuildNumber:         b.Number,
			WebURL:              b.WebURL,
			Commit:              b.Commit,
			Version:             t.Version,
			CreatedAt:           b.CreatedAt.Time,
			StartedAt:           b.StartedAt.Time,
			FinishedAt:          b.FinishedAt.Time,
			LeadTimeSeconds:     lead,
			ApprovalWaitSeconds: wait,
		})
	}
}

// commitTime is when the build's commit was made, for lead time: the configured meta-data key
// when set and readable, else the earliest build of the commit in the component's pipelines.
func (c *Collector) commitTime(cy *cycle, comp backstage.Component, b *buildkite.Build) (time.Time, bool) {
	if k := c.cfg.CommitTimeMetaDataKey; k != "" {
		if t, ok := parseTimeValue(b.MetaData[k]); ok {
			return t, true
		}
	}
	if !isCommit(b.Commit) {
		return time.Time{}, false
	}
	key := store.CommitKey(comp.Label, b.Commit)
	t, ok := cy.commits[key]
	c.mu.Lock()
	old, found := c.commits[key]
	c.mu.Unlock()
	if found && (!ok || old.Before(t)) {
		t, ok = old, true
	}
	return t, ok
}

// parseTimeValue reads RFC 3339 or Unix seconds.
func parseTimeValue(s string) (time.Time, bool) {
	s = strings.TrimSpace(s)
	if s == "" {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	if f, err := strconv.ParseFloat(s, 64); err == nil && f > 0 {
		return time.Unix(0, int64(f*1e9)), true
	}
	return time.Time{}, false
}

// isCommit excludes placeholders a build carries before its commit resolves.
func isCommit(s string) bool { return s != "" && s != "HEAD" }

// observeOpen counts an unfinished build in the running or awaiting-approval gauges.
func (c *Collector) observeOpen(cy *cycle, comp backstage.Component, b *buildkite.Build, now time.Time) {
	var running, awaiting bool
	var since time.Time
	switch {
	case b.Blocked:
		cy.blocked[b.ID] = true
		since = blockedSince(b)
		awaiting = now.Sub(since) <= c.cfg.AwaitingApprovalMaxAge.Std()
	case b.State == buildkite.StateScheduled || b.State == buildkite.StateRunning ||
		b.State == buildkite.StateFailing || b.State == buildkite.StateCanceling:
		running = true
		since = firstSet(b.StartedAt.Time, b.ScheduledAt.Time, b.CreatedAt.Time)
	}
	if !running && !awaiting {
		return
	}
	for _, t := range c.cls.targets(b, b.PipelineSlug()) {
		k := envKey(comp.Label, t.Environment)
		l := cy.live[k]
		if running {
			l.Running++
			l.RunningSince = earliest(l.RunningSince, since)
		} else {
			l.Awaiting++
			l.AwaitingSince = earliest(l.AwaitingSince, since)
		}
		cy.live[k] = l
	}
}

// blockedSince estimates when a build reached its block step without fetching jobs: the finish
// time it got when it blocked, else its start, else its creation.
func blockedSince(b *buildkite.Build) time.Time {
	return firstSet(b.FinishedAt.Time, b.StartedAt.Time, b.CreatedAt.Time)
}

func firstSet(ts ...time.Time) time.Time {
	for _, t := range ts {
		if !t.IsZero() {
			return t
		}
	}
	return time.Time{}
}

// approvalWait sums, over the build's unblocked block steps, runnable_at → unblocked_at; -1 when
// there is none.
func approvalWait(jobs []buildkite.Job) float64 {
	total, found := 0.0, false
	for _, j := range jobs {
		if j.Type != buildkite.JobTypeManual || j.UnblockedAt.IsZero() {
			continue
		}
		gate := firstSet(j.RunnableAt.Time, j.ScheduledAt.Time, j.CreatedAt.Time)
		if gate.IsZero() || j.UnblockedAt.Before(gate) {
			continue
		}
		total += j.UnblockedAt.Sub(gate).Seconds()
		found = true
	}
	if !found {
		return -1
	}
	return total
}

// listing is what one kind of query read.
type listing struct {
	builds  []buildkite.Build // of annotated pipelines; the others are dropped as pages arrive
	newest  time.Time         // newest finished_at of every build read, annotated or not
	orgWide bool
	// orgFinished holds the finished_at (Unix ns) of every build an org-wide listing read, for
	// the tail of the next cycle's estimate.
	orgFinished []int64
	started     time.Time // local, before the first request
}

func (l *listing) saw(b *buildkite.Build) {
	if b.FinishedAt.After(l.newest) {
		l.newest = b.FinishedAt.Time
	}
}

// window describes what a query reads for the estimates: fresh is the seconds of new builds it
// reads (1 for a level), and builds finished before newSince were read by an earlier cycle
// (zero: every build is new).
type window struct {
	from     time.Time // finished_from of the listing; zero for a level
	fresh    float64
	newSince time.Time
}

func (w window) isNew(b *buildkite.Build) bool {
	return w.newSince.IsZero() || !b.FinishedAt.Before(w.newSince)
}

// listBuilds runs one kind of query for the annotated pipelines of org, org-wide or per pipeline,
// whichever the estimates expect to be cheaper, and updates the estimates. With no org-wide
// estimate for finished builds and several pipelines, it first reads one org-wide page (the
// probe): if the page is not full it is the whole listing; else it tells the organization's
// build rate and the annotated pipelines' share, and is reused if the org-wide listing wins.
func (c *Collector) listBuilds(ctx context.Context, org string, pipelines map[string]backstage.Component, slugs []string,
	kind string, est costEstimates, w window, opts buildkite.ListBuildsOptions,
) (*listing, error) {
	e := est[kind]
	now := time.Now()
	l := &listing{started: now}
	fresh := max(w.fresh, 1)
	keep := func(b *buildkite.Build) bool {
		l.saw(b)
		if _, ok := pipelines[b.PipelineSlug()]; !ok {
			return false
		}
		l.builds = append(l.builds, *b)
		return true
	}
	orgWide, orgPages, pipePages := e.choose(slugs, w.fresh, now)
	strategy := ""
	var probe []buildkite.Build
	probeFull := false
	if kind == queryFinished && len(slugs) > 1 && e.stale(now) {
		var err error
		if probe, err = c.firstPage(ctx, org, opts); err != nil {
			return nil, err
		}
		strategy = "probe, then "
		orgWide = true
		if probeFull = len(probe) >= perPage; probeFull {
			orgBuilds, span, pipeBuilds := probeEstimate(probe, slugs, w.from)
			orgPages, pipePages = pages(orgBuilds), 0
			for _, s := range slugs {
				pipePages += pages(pipeBuilds[s])
			}
			// The probe page is read already: the org-wide listing costs the rest.
			orgWide = orgPages-1 <= pipePages
			e.orgRate, e.orgMeasured, e.orgTail = orgBuilds/span, now, orgBuilds/span*overlap.Seconds()
			for _, s := range slugs {
				e.pipeRate[s] = pipeBuilds[s] / span
			}
		} else {
			orgPages = 1
		}
	}
	if orgWide {
		strategy += "organization"
	} else {
		strategy += "pipelines"
	}
	level.Debug(c.logger).Log("msg", "Choosing builds query", "organization", org, "query", kind, "strategy", strategy,
		"estimated_org_pages", orgPages, "estimated_pipeline_pages", pipePages, "pipelines", len(slugs))
	if orgWide {
		l.orgWide = true
		total := 0
		counts := map[string]int{}
		visit := func(b *buildkite.Build) {
			if w.isNew(b) {
				total++
			}
			if !b.FinishedAt.IsZero() {
				l.orgFinished = append(l.orgFinished, b.FinishedAt.UnixNano())
			}
			if keep(b) && w.isNew(b) {
				counts[b.PipelineSlug()]++
			}
		}
		o := opts
		var seen map[string]time.Time
		for i := range probe {
			visit(&probe[i])
		}
		if probeFull {
			// Continue below the probe page: builds of its last second may be read twice.
			oldest := oldestCreated(probe).Truncate(time.Second)
			o.CreatedTo = oldest.Add(time.Second)
			seen = map[string]time.Time{}
			for i := range probe {
				if !probe[i].CreatedAt.Before(oldest) {
					seen[probe[i].ID] = probe[i].CreatedAt.Time
				}
			}
		}
		if probe == nil || probeFull {
			if err := c.sliced(ctx, o, seen, func(o buildkite.ListBuildsOptions, visit func([]buildkite.Build) error) error {
				return c.client.ListOrganizationBuilds(ctx, org, o, visit)
			}, visit); err != nil {
				return nil, err
			}
		}
		e.orgRate, e.orgMeasured = float64(total)/fresh, time.Now()
		for _, s := range slugs {
			e.pipeRate[s] = float64(counts[s]) / fresh
		}
		return l, nil
	}
	// The probe's builds are read again by the pipelines' listings; only its timestamps count.
	for i := range probe {
		l.saw(&probe[i])
	}
	for _, s := range slugs {
		n := 0
		err := c.sliced(ctx, opts, nil, func(o buildkite.ListBuildsOptions, visit func([]buildkite.Build) error) error {
			return c.client.ListPipelineBuilds(ctx, org, s, o, visit)
		}, func(b *buildkite.Build) {
			if keep(b) && w.isNew(b) {
				n++
			}
		})
		if err != nil {
			return nil, fmt.Errorf("pipeline %s/%s: %w", org, s, err)
		}
		e.pipeRate[s] = float64(n) / fresh
	}
	return l, nil
}

// firstPage reads the first page (of perPage builds) of an org-wide listing.
func (c *Collector) firstPage(ctx context.Context, org string, opts buildkite.ListBuildsOptions) ([]buildkite.Build, error) {
	opts.PerPage = perPage
	var out []buildkite.Build
	err := c.client.ListOrganizationBuilds(ctx, org, opts, func(page []buildkite.Build) error {
		out = page
		return buildkite.ErrStopPaging
	})
	return out, err
}

func oldestCreated(builds []buildkite.Build) time.Time {
	var oldest time.Time
	for i := range builds {
		if oldest.IsZero() || builds[i].CreatedAt.Before(oldest) {
			oldest = builds[i].CreatedAt.Time
		}
	}
	return oldest
}

// sliced pages through a listing, at most maxPagesPerSlice deep: past that, or when the API says
// the listing is too deep, it starts again with created_to set just above the oldest build read,
// so every request stays shallow. visit sees every build once: builds read twice at a slice
// boundary, or already in seen, are skipped. Only the ids of the boundary second are remembered
// across slices, so memory does not grow with the listing.
func (c *Collector) sliced(ctx context.Context, opts buildkite.ListBuildsOptions, seen map[string]time.Time,
	list func(buildkite.ListBuildsOptions, func([]buildkite.Build) error) error, visit func(*buildkite.Build),
) error {
	opts.PerPage = perPage
	limit := int(c.maxPages.Load())
	if seen == nil {
		seen = map[string]time.Time{}
	}
	for {
		n, full := 0, false
		var oldest time.Time
		err := list(opts, func(page []buildkite.Build) error {
			n++
			for i := range page {
				b := &page[i]
				if _, ok := seen[b.ID]; !ok {
					seen[b.ID] = b.CreatedAt.Time
					visit(b)
				}
				if oldest.IsZero() || b.CreatedAt.Before(oldest) {
					oldest = b.CreatedAt.Time
				}
			}
			if n >= limit && len(page) >= perPage {
				full = true
				return buildkite.ErrStopPaging
			}
			return nil
		})
		switch {
		case errors.Is(err, buildkite.ErrTooDeep) && n > 0:
			// Remember how deep the API lets us go, so later slices stop before the refusal.
			full = true
			if n < limit {
				limit = n
				c.maxPages.Store(int32(n))
				level.Debug(c.logger).Log("msg", "The API refused a deep page; narrowing time slices", "pages_per_slice", n)
			}
		case err != nil:
			return err
		}
		if !full {
			return nil
		}
		// The API filters by whole seconds; created_to is exclusive.
		boundary := oldest.Truncate(time.Second)
		next := boundary.Add(time.Second)
		if !opts.CreatedTo.IsZero() && !next.Before(opts.CreatedTo) {
			return fmt.Errorf("more than %d builds were created within the second before %s; cannot narrow the listing further", limit*perPage, opts.CreatedTo.Format(time.RFC3339))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		opts.CreatedTo = next
		// Only builds of the boundary second can come again.
		for id, created := range seen {
			if created.Before(boundary) {
				delete(seen, id)
			}
		}
	}
}
