package collector

import (
	"context"
	"maps"
	"sync/atomic"
	"time"

	"github.com/go-kit/log/level"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// orgState is the poller's memory of one organization.
type orgState struct {
	name   string
	active bool // named by the latest catalog
	health orgHealth
	wm     store.Watermark
	// live are the gauges published: the latest successful cycle's (pollLive, from its listing
	// of open builds pollOpen), updated by the webhook overlay (see webhook.go).
	live      map[deployment.EnvKey]deployment.Live
	pollLive  map[deployment.EnvKey]deployment.Live
	pollOpen  []buildkite.Build
	pollStart time.Time // when the cycle that listed pollOpen started
	// pipelines are the annotated pipelines of the latest successful cycle.
	pipelines map[string]backstage.Component
	// overlay holds, by build id, the webhook deliveries since the cycle before last started;
	// overlayDirty is set when it changed and live has not been computed since.
	overlay      map[string]overlayEntry
	overlayDirty bool
	// finishedSeen are builds recently seen finished, against late deliveries.
	finishedSeen map[string]finishedBuild
	// seenBlocked holds the ids of builds a cycle saw waiting on a block step; when one of them
	// finishes, its jobs are fetched to time the approval (approval_timing: seen_blocked).
	seenBlocked map[string]time.Time
	planner     *planner
	// jobs are the jobs Get-a-build read for finished builds, by build id, kept while the
	// overlap may list the same finish again; only the poll goroutine uses it, as the planner.
	jobs     map[string]fetchedJobs
	problems problemState
	// progress follows the running history backfill; nil when none runs.
	progress atomic.Pointer[backfillProgress]
	// caughtUp is set once a cycle of this process stored its builds (see fetch's catchUp).
	caughtUp bool
	// liveSince is the watermark this process's backfill ended at (see fetchRequest).
	liveSince time.Time
}

// orgHealth is the poll status of one organization.
type orgHealth struct {
	Polled       bool // at least one poll attempt finished
	LastOK       bool
	LastAttempt  time.Time // when the last poll ended
	LastSuccess  time.Time
	LastDuration time.Duration
	LastError    string // of the last poll, when it failed; the client keeps tokens out of errors
	Errors       uint64
}

// pollOrg runs one cycle for org, whose annotated pipelines map to components: fetch the
// builds, classify them, commit the records.
func (c *Collector) pollOrg(ctx context.Context, org string, pipelines map[string]backstage.Component) {
	start := time.Now()
	c.mu.Lock()
	o := c.orgState(org)
	wm := o.wm
	seenBlocked := make(map[string]bool, len(o.seenBlocked))
	for id := range o.seenBlocked {
		seenBlocked[id] = true
	}
	checks := c.existenceChecks(org, o, pipelines, start)
	catchUp := !o.caughtUp
	liveSince := o.liveSince
	c.mu.Unlock()
	var progress *backfillProgress
	if backfilling(wm) {
		progress = newBackfillProgress(org, start)
		o.progress.Store(progress)
	}
	defer o.progress.Store(nil)

	cycleCtx, cancel := context.WithTimeout(ctx, c.cycleTimeout(progress != nil))
	defer cancel()
	f, err := c.fetch(cycleCtx, fetchRequest{org: org, pipelines: pipelines, wm: wm, start: start, seenBlocked: seenBlocked,
		planner: o.planner, jobs: o.jobs, checkExists: checks, progress: progress, catchUp: catchUp, liveSince: liveSince})
	if err != nil {
		c.mu.Lock()
		o.health.Polled, o.health.LastOK, o.health.LastDuration = true, false, time.Since(start)
		o.health.LastAttempt, o.health.LastError = time.Now(), err.Error()
		o.health.Errors++
		c.mu.Unlock()
		if ctx.Err() == nil {
			level.Error(c.logger).Log("msg", "Polling the organization failed; keeping the last known state and retrying next cycle", "organization", org, "err", err)
		}
		return
	}
	var latest time.Time
	if now, ok := c.buildkiteNow(); ok {
		latest = now.Add(maxFutureSkew)
	}
	res := c.classify(deployment.Input{
		Organization:    org,
		Pipelines:       pipelines,
		Finished:        f.finished,
		Open:            f.open,
		Now:             start,
		CommitFirstSeen: c.commitFirstSeen,
		Latest:          latest,
		Annotations:     f.annotations,
		Committed:       c.committedFunc(),
	})
	if added, ok := c.commit(org, o, pipelines, f, res, start); ok {
		c.logBackfillDone(progress, added)
	}
}

const (
	// minCycleTimeout and cycleTimeoutIntervals bound a steady-state cycle: a hostile or
	// stalled API (a body trickling a byte every few seconds) must not hold an organization's
	// poll, and buildkite_up, for ever. backfillTimeout bounds a backfill, which at 30 requests a
	// minute legitimately takes an hour or two.
	minCycleTimeout       = 5 * time.Minute
	cycleTimeoutIntervals = 10
	backfillTimeout       = 12 * time.Hour
)

// cycleTimeout is the deadline of one organization's cycle.
func (c *Collector) cycleTimeout(backfilling bool) time.Duration {
	if backfilling {
		return backfillTimeout
	}
	return max(minCycleTimeout, cycleTimeoutIntervals*c.pollInterval)
}

// maxFutureSkew is how far after Buildkite's clock a finish time may be before the build is
// refused: Buildkite stamps finishes on its own clock, so only a damaged or hostile value is
// later; the margin covers the Date header's whole seconds and the time since it was read.
const maxFutureSkew = 10 * time.Minute

// serverClock is implemented by a client that reads Buildkite's clock from its answers.
type serverClock interface {
	ServerTime() (time.Time, bool)
}

// buildkiteNow is Buildkite's clock, as its answers last said; not ok when it is not known.
// The exporter's own clock is no judge: it may be hours off Buildkite's.
func (c *Collector) buildkiteNow() (time.Time, bool) {
	if sc, ok := c.client.(serverClock); ok {
		return sc.ServerTime()
	}
	return time.Time{}, false
}

// classify classifies a cycle's builds, each finished build with the configuration in effect
// when it finished (see SetConfig), the open builds with the current one.
func (c *Collector) classify(in deployment.Input) deployment.Result {
	cur := c.settings.Load()
	if cur.earlier == nil {
		return cur.cls.Classify(in)
	}
	groups := map[*settings][]buildkite.Build{}
	for _, b := range in.Finished {
		e := cur
		for e.earlier != nil && b.FinishedAt.Before(e.from) {
			e = e.earlier
		}
		groups[e] = append(groups[e], b)
	}
	main := in
	main.Finished = groups[cur]
	res := cur.cls.Classify(main)
	for e, builds := range groups {
		if e == cur {
			continue
		}
		old := in
		old.Finished, old.Open = builds, nil
		r := e.cls.Classify(old)
		res.Records = append(res.Records, r.Records...)
		for k, t := range r.Commits {
			if t0, ok := res.Commits[k]; !ok || t.Before(t0) {
				res.Commits[k] = t
			}
		}
		maps.Copy(res.Blocked, r.Blocked)
		res.Future = append(res.Future, r.Future...)
		for s, fb := range r.EnvironmentFallback {
			if _, ok := res.EnvironmentFallback[s]; !ok {
				res.EnvironmentFallback[s] = fb
			}
		}
		res.Annotations = append(res.Annotations, r.Annotations...)
		maps.Copy(res.AnnotationsAgree, r.AnnotationsAgree)
	}
	deployment.SortRecords(res.Records)
	return res
}

// commitFirstSeen looks a commit up in the first-seen times stored so far; other
// organizations' cycles update them concurrently, hence the lock.
func (c *Collector) commitFirstSeen(key string) (time.Time, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t, ok := c.commits[key]
	return t, ok
}

// commit appends a cycle's records, watermark and commits to the deployment log in one batch,
// and applies the records the log reports as new to the aggregate. If the append fails the
// watermark stays, so the next cycle reads the same builds again.
// It returns how many records were new, and whether the append succeeded.
func (c *Collector) commit(org string, o *orgState, pipelines map[string]backstage.Component, f *fetched, res deployment.Result, start time.Time) (int, bool) {
	elapsed := time.Since(start)
	wm := f.watermark
	added, err := c.log.Append(store.Batch{
		Records:          res.Records,
		Watermarks:       map[string]store.Watermark{org: wm},
		CommitsFirstSeen: res.Commits,
	})
	c.mu.Lock()
	defer c.mu.Unlock()
	o.health.Polled, o.health.LastOK, o.health.LastDuration = true, true, elapsed
	o.health.LastSuccess, o.health.LastAttempt, o.health.LastError = time.Now(), time.Now(), ""
	now := time.Now()
	// The listing replaces the gauges webhooks made before this cycle started.
	o.pollLive, o.pollOpen, o.pollStart, o.pipelines = res.Live, f.open, start, pipelines
	reconcileOverlayLocked(o, f, start, now)
	o.live = c.liveLocked(o, now)
	o.overlayDirty = false
	for id := range res.Blocked {
		if _, ok := o.seenBlocked[id]; !ok {
			o.seenBlocked[id] = now
		}
	}
	// Forget builds blocked so long ago they can no longer be awaiting approval.
	for id, t := range o.seenBlocked {
		if now.Sub(t) > 2*c.config().AwaitingApprovalMaxAge.Std() {
			delete(o.seenBlocked, id)
		}
	}
	if err != nil {
		c.storageErrors++
		level.Error(c.logger).Log("msg", "Storing deployments failed; serving what is known and retrying next cycle", "organization", org, "records", len(res.Records), "err", err)
		return 0, false
	}
	for k, t := range res.Commits {
		if old, ok := c.commits[k]; !ok || t.Before(old) {
			c.commits[k] = t
		}
	}
	if backfilling(o.wm) {
		o.liveSince = wm.FinishedFrom
	}
	o.wm = wm
	o.caughtUp = true
	for _, r := range added {
		c.agg.Apply(r)
		delete(o.seenBlocked, r.BuildID)
	}
	c.rememberCommittedLocked(res.Records)
	c.pruneCommittedLocked(c.committedHorizonLocked())
	c.updateProblems(org, o, pipelines, f, res, now)
	level.Debug(c.logger).Log("msg", "Polled organization", "organization", org, "records", len(res.Records), "new_records", len(added), "duration", elapsed)
	return len(added), true
}
