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
	// overlap is re-read before the watermark each cycle: it absorbs clock skew between the
	// exporter and Buildkite and builds that became visible late. Re-read outcomes are
	// recognised by their record key and not counted twice.
	overlap = 10 * time.Minute
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
// per annotated pipeline, as a rate per second of window (finished) or a level (open).
type costEstimates map[string]*costEstimate

type costEstimate struct {
	orgRate     float64 // -1 until an org-wide query measured it
	orgMeasured time.Time
	pipeRate    map[string]float64
}

// remeasureAfter: an org-wide cost measured longer ago is tried again once, so that an
// organization whose unrelated pipelines became quiet gets the cheap org-wide listing back.
const remeasureAfter = time.Hour

func newCostEstimates() costEstimates {
	return costEstimates{
		queryFinished: {orgRate: -1, pipeRate: map[string]float64{}},
		queryOpen:     {orgRate: -1, pipeRate: map[string]float64{}},
	}
}

func pages(n float64) int { return max(1, int(math.Ceil(n/perPage))) }

// choose returns whether the org-wide endpoint is expected to cost fewer pages than one listing
// per pipeline, and both estimates. window scales the rates (1 for a level).
func (e *costEstimate) choose(pipelines []string, window float64, now time.Time) (orgWide bool, orgPages, pipePages int) {
	for _, p := range pipelines {
		pipePages += pages(e.pipeRate[p] * window)
	}
	if e.orgRate < 0 || now.Sub(e.orgMeasured) > remeasureAfter {
		// Never measured: try org-wide once when it can be cheaper at all.
		return len(pipelines) > 1, -1, pipePages
	}
	orgPages = pages(e.orgRate * window)
	return orgPages < pipePages, orgPages, pipePages
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
	listFinished := func(withJobs bool) ([]buildkite.Build, error) {
		return c.listBuilds(ctx, org, slugs, queryFinished, est, start.Sub(from).Seconds(), buildkite.ListBuildsOptions{
			FinishedFrom:    from,
			ExcludeJobs:     !withJobs,
			ExcludePipeline: true,
		})
	}
	finished, err := listFinished(withJobs)
	if withJobs && errors.Is(err, buildkite.ErrBodyTooLarge) {
		// Pipelines with hundreds of jobs per build can make a page of builds with their jobs
		// larger than the response cap; the deployments matter more than their approval waits.
		level.Warn(c.logger).Log("msg", "Builds with their jobs exceed the response size cap; listing them without jobs, so their approval waits are not measured",
			"organization", org, "err", err)
		finished, err = listFinished(false)
	}
	if err != nil {
		return nil, wm, fmt.Errorf("listing builds finished since %s: %w", from.Format(time.RFC3339), err)
	}
	if !backfilling {
		backfilled, err := c.backfillNewPipelines(ctx, org, slugs, wm.Pipelines, start)
		if err != nil {
			return nil, wm, err
		}
		finished = mergeBuilds(finished, backfilled)
	}
	// Open builds older than twice the approval age are abandoned: neither running nor awaiting
	// approval in any sense the gauges report.
	open, err := c.listBuilds(ctx, org, slugs, queryOpen, est, 1, buildkite.ListBuildsOptions{
		States:          openStates,
		CreatedFrom:     start.Add(-2 * c.cfg.AwaitingApprovalMaxAge.Std()),
		ExcludeJobs:     true,
		ExcludePipeline: true,
	})
	if err != nil {
		return nil, wm, fmt.Errorf("listing unfinished builds: %w", err)
	}

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
	return cy, store.Watermark{FinishedFrom: start, BackfillDone: true, Pipelines: slugs}, nil
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
		builds, err := c.sliced(ctx, buildkite.ListBuildsOptions{
			FinishedFrom:    from,
			ExcludeJobs:     c.cfg.ApprovalTiming == config.ApprovalTimingOff,
			ExcludePipeline: true,
		}, func(o buildkite.ListBuildsOptions, visit func([]buildkite.Build) error) error {
			return c.client.ListPipelineBuilds(ctx, org, s, o, visit)
		})
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

// listBuilds runs one kind of query for the annotated pipelines of org, org-wide or per pipeline,
// whichever the estimates expect to be cheaper, and updates the estimates.
func (c *Collector) listBuilds(ctx context.Context, org string, slugs []string, kind string, est costEstimates, window float64, opts buildkite.ListBuildsOptions) ([]buildkite.Build, error) {
	e := est[kind]
	orgWide, orgPages, pipePages := e.choose(slugs, window, time.Now())
	strategy := "pipelines"
	if orgWide {
		strategy = "organization"
	}
	level.Debug(c.logger).Log("msg", "Choosing builds query", "organization", org, "query", kind, "strategy", strategy,
		"estimated_org_pages", orgPages, "estimated_pipeline_pages", pipePages, "pipelines", len(slugs))
	window = max(window, 1)
	if orgWide {
		builds, err := c.sliced(ctx, opts, func(o buildkite.ListBuildsOptions, visit func([]buildkite.Build) error) error {
			return c.client.ListOrganizationBuilds(ctx, org, o, visit)
		})
		if err != nil {
			return nil, err
		}
		e.orgRate, e.orgMeasured = float64(len(builds))/window, time.Now()
		counts := map[string]int{}
		for i := range builds {
			counts[builds[i].PipelineSlug()]++
		}
		for _, s := range slugs {
			e.pipeRate[s] = float64(counts[s]) / window
		}
		return builds, nil
	}
	var all []buildkite.Build
	for _, s := range slugs {
		builds, err := c.sliced(ctx, opts, func(o buildkite.ListBuildsOptions, visit func([]buildkite.Build) error) error {
			return c.client.ListPipelineBuilds(ctx, org, s, o, visit)
		})
		if err != nil {
			return nil, fmt.Errorf("pipeline %s/%s: %w", org, s, err)
		}
		e.pipeRate[s] = float64(len(builds)) / window
		all = append(all, builds...)
	}
	return all, nil
}

// sliced pages through a listing, at most maxPagesPerSlice deep: past that, or when the API says
// the listing is too deep, it starts again with created_to set just above the oldest build read,
// so every request stays shallow. Builds read twice at a slice boundary are returned once.
func (c *Collector) sliced(ctx context.Context, opts buildkite.ListBuildsOptions, list func(buildkite.ListBuildsOptions, func([]buildkite.Build) error) error) ([]buildkite.Build, error) {
	opts.PerPage = perPage
	limit := int(c.maxPages.Load())
	seen := map[string]bool{}
	var out []buildkite.Build
	for {
		n, full := 0, false
		var oldest time.Time
		err := list(opts, func(page []buildkite.Build) error {
			n++
			for _, b := range page {
				if !seen[b.ID] {
					seen[b.ID] = true
					out = append(out, b)
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
			return nil, err
		}
		if !full {
			return out, nil
		}
		// The API filters by whole seconds; created_to is exclusive.
		next := oldest.Truncate(time.Second).Add(time.Second)
		if !opts.CreatedTo.IsZero() && !next.Before(opts.CreatedTo) {
			return nil, fmt.Errorf("more than %d builds were created within the second before %s; cannot narrow the listing further", limit*perPage, opts.CreatedTo.Format(time.RFC3339))
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		opts.CreatedTo = next
	}
}
