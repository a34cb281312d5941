package collector

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/go-kit/log/level"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
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
	perPage = buildkite.MaxPerPage
)

// openStates are the states of builds that have not finished; blocked (a filter-only state)
// lists the builds waiting on a block step, which keep state passed in their JSON.
var openStates = []string{
	buildkite.StateCreating, buildkite.StateScheduled, buildkite.StateRunning,
	buildkite.StateFailing, buildkite.StateCanceling, buildkite.StateBlocked,
}

// fetched is what the fetch step of one cycle read.
type fetched struct {
	finished, open []buildkite.Build
	watermark      store.Watermark
	// annotations are the annotations of the steady-state listing's finished deployments,
	// by build id (Options.ReadAnnotations; never the backfill's builds).
	annotations map[string][]buildkite.Annotation
	// unreadable are the annotated pipelines whose builds the API refused (404: renamed,
	// deleted, misspelt, or not visible to the token; 403), by slug: snapshot.ReasonNotFound or
	// snapshot.ReasonForbidden. The rest of the organization is read and counted as usual.
	unreadable map[string]string
	// exists holds the result of the existence checks of pipelines with no deployment yet.
	exists map[string]bool
}

// fetchRequest is what a cycle starts fetching with: the organization's state copied under the
// collector's lock, and its planner and jobs cache, which only this cycle uses (one cycle per
// organization runs at a time).
type fetchRequest struct {
	org         string
	pipelines   map[string]backstage.Component // annotated slug → component
	wm          store.Watermark
	start       time.Time
	seenBlocked map[string]bool
	planner     *planner
	jobs        map[string]fetchedJobs
	checkExists []string          // pipelines to look up (existenceChecks)
	progress    *backfillProgress // set while backfilling
	catchUp     bool              // the first cycle of this process
	// liveSince: builds that finished by it were counted by this process's backfill, so
	// their annotations are not read (history, even in the overlap after the backfill).
	liveSince time.Time
}

// backfilling says whether the cycle reads the history window: the first start, or one that
// never finished it.
func backfilling(wm store.Watermark) bool { return !wm.BackfillDone || wm.FinishedFrom.IsZero() }

// fetch lists what changed in the organization since the watermark: builds finished since it
// (less the overlap; the first start: the backfill window), the history of pipelines annotated
// since the last cycle, builds not finished, and the jobs of the finished builds whose
// classification needs them. It touches no collector state but the jobs webhooks fetched.
func (c *Collector) fetch(ctx context.Context, rq fetchRequest) (*fetched, error) {
	org, pipelines, wm, start, pl, progress := rq.org, rq.pipelines, rq.wm, rq.start, rq.planner, rq.progress
	unreadable := map[string]string{}
	history := backfilling(wm)
	from := wm.FinishedFrom.Add(-overlap)
	if history {
		from = start.Add(-c.backfill)
		level.Info(c.logger).Log("msg", "Backfilling deployment history; deployment series appear when it completes", "organization", org, "since", from)
	}
	slugs := sortedKeys(pipelines)
	// Jobs carry the block steps' timing and the evidence of retried failures. In the steady
	// state they are fetched only for the builds that need them (Classifier.NeedsJobs); the
	// backfill, whose builds are history, lists them with their jobs instead, which costs bytes,
	// not requests. So does the first cycle of a process (catchUp): which builds an earlier
	// process saw blocked is not stored, and a build approved while the exporter was down
	// would otherwise be counted without its approval wait.
	withJobs := c.config().ApprovalTiming == config.ApprovalTimingAll || history || rq.catchUp
	w := window{from: from, fresh: start.Sub(from).Seconds(), progress: progress}
	if !history {
		w.fresh, w.newSince = pl.fresh(wm.FinishedFrom, start), wm.FinishedFrom
	}
	listFinished := func(withJobs bool) (*listing, error) {
		return c.listBuilds(ctx, org, pipelines, slugs, unreadable, queryFinished, pl, w, buildkite.ListBuildsOptions{
			FinishedFrom:       from,
			ExcludeJobs:        !withJobs,
			IncludeRetriedJobs: withJobs,
			ExcludePipeline:    true,
		})
	}
	listed := time.Now()
	lf, err := listFinished(withJobs)
	if withJobs && errors.Is(err, buildkite.ErrBodyTooLarge) {
		// Pipelines with hundreds of jobs per build can make a page of builds with their jobs
		// larger than the response cap; the builds that need jobs get them one by one below.
		level.Warn(c.logger).Log("msg", "Builds with their jobs exceed the response size cap; listing them without jobs and fetching jobs only where needed",
			"organization", org, "err", err)
		lf, err = listFinished(false)
	}
	if err != nil {
		return nil, fmt.Errorf("listing builds finished since %s: %w", from.Format(time.RFC3339), err)
	}
	lf.started = listed
	finished := lf.builds
	newest := lf.newest
	if !history {
		backfilled, err := c.backfillNewPipelines(ctx, org, slugs, wm.Pipelines, unreadable, start)
		if err != nil {
			return nil, err
		}
		for i := range backfilled {
			newest = latest(newest, backfilled[i].FinishedAt.Time)
		}
		finished = mergeBuilds(finished, backfilled)
	}
	old := wm.FinishedFrom
	if history {
		old = time.Time{}
	}
	newWM := nextWatermark(old, newest, time.Since(listed), start, from)
	pl.updateTails(lf, newWM)
	for id, e := range rq.jobs {
		if e.finishedAt.Before(from) {
			delete(rq.jobs, id) // neither this listing nor a later one reaches back to this finish
		}
	}
	// Open builds older than twice the approval age are abandoned: neither running nor awaiting
	// approval in any sense the gauges report.
	lo, err := c.listBuilds(ctx, org, pipelines, slugs, unreadable, queryOpen, pl, window{fresh: 1}, buildkite.ListBuildsOptions{
		States:          openStates,
		CreatedFrom:     start.Add(-2 * c.config().AwaitingApprovalMaxAge.Std()),
		ExcludeJobs:     true,
		ExcludePipeline: true,
	})
	if err != nil {
		return nil, fmt.Errorf("listing unfinished builds: %w", err)
	}
	if finished, err = c.fetchJobs(ctx, org, finished, rq.seenBlocked, rq.jobs); err != nil {
		return nil, err
	}
	var anns map[string][]buildkite.Annotation
	if !history {
		// The live listing only: the builds backfilled for a newly linked pipeline are history,
		// and so are those the backfill counted that the overlap after it reads again.
		live := lf.builds
		if !rq.liveSince.IsZero() {
			live = slices.DeleteFunc(slices.Clone(live), func(b buildkite.Build) bool { return !b.FinishedAt.After(rq.liveSince) })
		}
		if anns, err = c.fetchAnnotations(ctx, org, live); err != nil {
			return nil, err
		}
	}
	if len(unreadable) == len(slugs) {
		// Every pipeline refused: is it the organization (a misspelt slug, no access), or are
		// they all misspelt? One build of the organization-wide listing tells.
		err := c.client.ListOrganizationBuilds(ctx, org, buildkite.ListBuildsOptions{PerPage: 1, ExcludeJobs: true, ExcludePipeline: true},
			func([]buildkite.Build) error { return buildkite.ErrStopPaging })
		if err != nil {
			return nil, fmt.Errorf("every annotated pipeline of the organization was refused, and so was the organization: check the organization slug in the annotations and the token's access to it: %w", err)
		}
	}
	exists := map[string]bool{}
	for _, s := range rq.checkExists {
		if unreadable[s] != "" {
			continue
		}
		_, err := c.client.GetPipeline(ctx, org, s)
		switch {
		case err == nil:
			exists[s] = true
		case errors.Is(err, buildkite.ErrNotFound):
			exists[s] = false
		case errors.Is(err, buildkite.ErrForbidden):
			// The token may not read pipelines (read_pipelines); the token checker says so.
		default:
			return nil, fmt.Errorf("checking that pipeline %s/%s exists: %w", org, s, err)
		}
	}
	// A pipeline the API refused is not covered: once it can be read (the token gets access,
	// the pipeline is created), it gets the backfill of a newly annotated pipeline.
	covered := make([]string, 0, len(slugs))
	for _, s := range slugs {
		if unreadable[s] == "" {
			covered = append(covered, s)
		}
	}
	return &fetched{
		finished:    finished,
		open:        lo.builds,
		watermark:   store.Watermark{FinishedFrom: newWM, BackfillDone: true, Pipelines: covered},
		unreadable:  unreadable,
		exists:      exists,
		annotations: anns,
	}, nil
}

// unreadableReason classifies a pipeline listing's error: a 404 or 403 concerns that pipeline
// only; anything else concerns the organization's cycle.
func unreadableReason(err error) string {
	switch {
	case errors.Is(err, buildkite.ErrNotFound):
		return snapshot.ReasonNotFound
	case errors.Is(err, buildkite.ErrForbidden):
		return snapshot.ReasonForbidden
	}
	return ""
}

// fetchedJobs are the jobs Get-a-build read for a build that finished at finishedAt.
type fetchedJobs struct {
	finishedAt time.Time
	jobs       []buildkite.Job
}

// fetchJobs reads, with Get-a-build, the jobs (retried attempts included) of the finished builds
// listed without them whose classification needs them. A finish read again in the overlap of
// later cycles takes its jobs from cache: they cannot have changed, as a retry re-opens the
// build and gives it a new finish. It returns the builds to classify: a build retried since it
// was listed is left out until it finishes again.
func (c *Collector) fetchJobs(ctx context.Context, org string, builds []buildkite.Build, seenBlocked map[string]bool, cache map[string]fetchedJobs) ([]buildkite.Build, error) {
	kept := builds[:0]
	for i := range builds {
		b := builds[i]
		if !c.classifier().NeedsJobs(&b, seenBlocked[b.ID]) {
			kept = append(kept, b)
			continue
		}
		if e, ok := cache[b.ID]; ok && e.finishedAt.Equal(b.FinishedAt.Time) {
			b.Jobs = e.jobs
			kept = append(kept, b)
			continue
		}
		if e, ok := c.takeWebhookJobs(b.ID); ok && e.finishedAt.Equal(b.FinishedAt.Time) {
			b.Jobs = e.jobs
			cache[b.ID] = e
			continue
		}
		slug := b.PipelineSlug()
		full, err := c.client.GetBuild(ctx, org, slug, b.Number, buildkite.GetBuildOptions{ExcludePipeline: true, IncludeRetriedJobs: true})
		switch {
		case err == nil && !full.FinishedAt.Equal(b.FinishedAt.Time):
			// Retried (or retried and finished again) since it was listed: its jobs belong to
			// another outcome than the listing's state and finish time, and read together they
			// would count the listed failure twice, as its attempt and as the retry's. The
			// build is listed again when it finishes again, after the watermark, and its
			// failed attempts are then read from its jobs.
			level.Debug(c.logger).Log("msg", "A finished build was retried before its jobs were read; counting it when it finishes again", "organization", org,
				"pipeline", slug, "build", b.Number)
			continue
		case err == nil:
			b.Jobs = full.Jobs
			if b.Jobs == nil {
				b.Jobs = []buildkite.Job{}
			}
			cache[b.ID] = fetchedJobs{finishedAt: b.FinishedAt.Time, jobs: b.Jobs}
		case errors.Is(err, buildkite.ErrNotFound), errors.Is(err, buildkite.ErrBodyTooLarge):
			// Deleted, no longer visible, or too many jobs to read: count the outcome from the
			// build alone (keyed by its finish time, without an approval wait).
			level.Warn(c.logger).Log("msg", "Cannot read the jobs of a finished build; counting it without them", "organization", org,
				"pipeline", slug, "build", b.Number, "err", err)
		default:
			return nil, fmt.Errorf("fetching the jobs of build %s/%s#%d: %w", org, slug, b.Number, err)
		}
		kept = append(kept, b)
	}
	return kept, nil
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
// stored once: records are keyed by build and finish time or attempt.
func (c *Collector) backfillNewPipelines(ctx context.Context, org string, slugs, covered []string, unreadable map[string]string, start time.Time) ([]buildkite.Build, error) {
	if covered == nil || c.backfill <= 0 {
		return nil, nil
	}
	var out []buildkite.Build
	for _, s := range slugs {
		if _, ok := slices.BinarySearch(covered, s); ok || unreadable[s] != "" {
			continue
		}
		from := start.Add(-c.backfill)
		level.Info(c.logger).Log("msg", "Backfilling a newly annotated pipeline", "organization", org, "pipeline", s, "since", from)
		err := c.client.ListBuildsSliced(ctx, org, s, buildkite.ListBuildsOptions{
			FinishedFrom:       from,
			IncludeRetriedJobs: true,
			ExcludePipeline:    true,
		}, nil, func(b *buildkite.Build) { out = append(out, *b) })
		if reason := unreadableReason(err); reason != "" {
			unreadable[s] = reason
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("backfilling newly annotated pipeline %s/%s: %w", org, s, err)
		}
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
	// progress follows a history backfill; nil otherwise.
	progress *backfillProgress
}

func (w window) isNew(b *buildkite.Build) bool {
	return w.newSince.IsZero() || !b.FinishedAt.Before(w.newSince)
}

// listBuilds runs one kind of query for the annotated pipelines of org, org-wide or per pipeline
// as the planner chooses, and reports what it read to the planner. A probe (the planner's
// choice when it has no org-wide estimate) reads one org-wide page first: if the page is not
// full it is the whole listing; else the planner decides from it, and it is reused if the
// org-wide listing wins.
func (c *Collector) listBuilds(ctx context.Context, org string, pipelines map[string]backstage.Component, slugs []string,
	unreadable map[string]string, kind string, pl *planner, w window, opts buildkite.ListBuildsOptions,
) (*listing, error) {
	now := time.Now()
	l := &listing{started: now}
	keep := func(b *buildkite.Build) bool {
		l.saw(b)
		w.progress.sawBuild()
		c.maybeLogProgress(w.progress)
		if _, ok := pipelines[b.PipelineSlug()]; !ok {
			return false
		}
		l.builds = append(l.builds, *b)
		return true
	}
	p := pl.plan(kind, slugs, w.fresh, now)
	strategy := ""
	var probe []buildkite.Build
	probeFull := false
	if p.probe {
		var err error
		if probe, err = c.firstPage(ctx, org, opts); err != nil {
			return nil, err
		}
		strategy = "probe, then "
		if probeFull = len(probe) >= perPage; probeFull {
			p = pl.decideAfterProbe(kind, probe, slugs, w.from, now)
		} else {
			p = plan{orgWide: true, orgPages: 1, pipePages: p.pipePages}
		}
	}
	if p.orgWide {
		w.progress.plan(1, p.orgPages)
	} else {
		w.progress.plan(len(slugs)-len(unreadable), p.pipePages)
	}
	if p.orgWide {
		strategy += "organization"
	} else {
		strategy += "pipelines"
	}
	level.Debug(c.logger).Log("msg", "Choosing builds query", "organization", org, "query", kind, "strategy", strategy,
		"estimated_org_pages", p.orgPages, "estimated_pipeline_pages", p.pipePages, "pipelines", len(slugs))
	if p.orgWide {
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
			if err := c.client.ListBuildsSliced(ctx, org, "", o, seen, visit); err != nil {
				return nil, err
			}
		}
		w.progress.listingDone()
		pl.observeOrgWide(kind, total, counts, slugs, w.fresh, time.Now())
		return l, nil
	}
	// The probe's builds are read again by the pipelines' listings; only its timestamps count.
	for i := range probe {
		l.saw(&probe[i])
	}
	for _, s := range slugs {
		if unreadable[s] != "" {
			continue // refused by an earlier listing of this cycle
		}
		n := 0
		err := c.client.ListBuildsSliced(ctx, org, s, opts, nil, func(b *buildkite.Build) {
			if keep(b) && w.isNew(b) {
				n++
			}
		})
		w.progress.listingDone()
		if reason := unreadableReason(err); reason != "" {
			unreadable[s] = reason
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("pipeline %s/%s: %w", org, s, err)
		}
		pl.observePipeline(kind, s, n, w.fresh)
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
