package deployment

import (
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// Input is what one poll cycle of one organization fetched.
type Input struct {
	Organization string
	// Pipelines maps the organization's annotated pipeline slugs to their components.
	Pipelines map[string]backstage.Component
	// Finished are builds listed as finished since the watermark; Open are builds not finished.
	// A build's Jobs are nil when they were not read (see Outcomes).
	Finished []buildkite.Build
	Open     []buildkite.Build
	// Now is the cycle's start, for the age of builds awaiting approval.
	Now time.Time
	// CommitFirstSeen returns the earliest created_at stored for a store.CommitKey; nil: none.
	CommitFirstSeen func(key string) (time.Time, bool)
	// Latest is the latest finish time a build may have: Buildkite's clock now (from the Date
	// of its answers) plus a small skew. A build that finished later is refused (see
	// Result.Future): one failure stamped 70 years ahead would otherwise stay the latest outcome
	// of its environment, failing for ever. Zero: no check.
	Latest time.Time
	// Annotations are the annotations read for finished builds, by build id
	// (--buildkite.read-annotations); a build without an entry had none read.
	Annotations map[string][]buildkite.Annotation
	// Committed returns the environments (sorted) of the outcomes of build id already
	// committed, within the poll overlap and the webhook window; nil: none known. The
	// environment rules 3 to 5 stick to them (see finishedTargets). Nil func: no pin.
	Committed func(buildID string) []string
}

// Result is what the cycle's builds mean.
type Result struct {
	// Records are the deployment outcomes, sorted by finish time then key: the order the
	// aggregate applies them in.
	Records []store.Record
	// Commits are the earliest created_at of each commit's builds in this cycle, by CommitKey.
	Commits map[string]time.Time
	// Live are the running and awaiting-approval gauges, by (component, environment).
	Live map[EnvKey]Live
	// Blocked are the ids of the builds seen waiting on a block step.
	Blocked map[string]bool
	// Future are the finished builds refused for a finish time after Input.Latest.
	Future []buildkite.Build
	// EnvironmentFallback is, per pipeline slug with finished deployments in this cycle,
	// whether none of them named its environment in meta-data (the slug or the default
	// environment was used: a warning, the deployments still count).
	EnvironmentFallback map[string]bool
	// Annotations are the builds whose deployment annotations disagree with what counted
	// them; AnnotationsAgree the pipelines (slugs) with a finished deployment whose
	// annotations agreed.
	Annotations      []AnnotationFinding
	AnnotationsAgree map[string]bool
}

// EnvKey is a (component, environment) pair.
type EnvKey struct{ Component, Environment string }

// Live is what a poll saw of the builds of one (component, environment) that have not finished.
type Live struct {
	Running       int
	RunningSince  time.Time
	Awaiting      int
	AwaitingSince time.Time
}

// Add merges two organizations' gauges of one (component, environment).
func (l Live) Add(o Live) Live {
	l.Running += o.Running
	l.Awaiting += o.Awaiting
	l.RunningSince = earliest(l.RunningSince, o.RunningSince)
	l.AwaitingSince = earliest(l.AwaitingSince, o.AwaitingSince)
	return l
}

// NeedsJobs says whether the jobs of finished build b must be fetched before it is classified,
// because its listing came without them: a failed build (its attempt ordinal keys it, see
// Outcomes), a build that failed at some point (failing_at: a retry may have hidden a failure),
// and, with approval_timing seen_blocked, a build an earlier cycle saw blocked.
func (c Classifier) NeedsJobs(b *buildkite.Build, seenBlocked bool) bool {
	if b.Jobs != nil || !b.Finished() {
		return false
	}
	return b.State == buildkite.StateFailed || !b.FailingAt.IsZero() ||
		(seenBlocked && c.cfg.ApprovalTiming == config.ApprovalTimingSeenBlocked)
}

// Classify turns the builds of one cycle into deployment records and live gauges.
func (c Classifier) Classify(in Input) Result {
	res := Result{Commits: map[string]time.Time{}, Live: map[EnvKey]Live{}, Blocked: map[string]bool{}, EnvironmentFallback: map[string]bool{},
		AnnotationsAgree: map[string]bool{}}
	// Commits first: a deployment's lead time counts from the earliest build of its commit,
	// which may be in this very batch.
	for _, set := range [][]buildkite.Build{in.Finished, in.Open} {
		for i := range set {
			b := &set[i]
			comp, ok := in.Pipelines[b.PipelineSlug()]
			if !ok || !isCommit(b.Commit) || b.CreatedAt.IsZero() {
				continue
			}
			k := store.CommitKey(comp.Label, b.Commit)
			if t, ok := res.Commits[k]; !ok || b.CreatedAt.Before(t) {
				res.Commits[k] = b.CreatedAt.Time
			}
		}
	}
	for i := range in.Open {
		b := &in.Open[i]
		if comp, ok := in.Pipelines[b.PipelineSlug()]; ok && !b.Finished() {
			c.observeOpen(&res, comp, b, in.Now)
		}
	}
	for i := range in.Finished {
		b := &in.Finished[i]
		slug := b.PipelineSlug()
		comp, ok := in.Pipelines[slug]
		if !ok {
			continue
		}
		if b.Blocked {
			res.Blocked[b.ID] = true
		}
		if !in.Latest.IsZero() && b.FinishedAt.After(in.Latest) {
			res.Future = append(res.Future, *b)
			continue
		}
		found := len(res.Annotations)
		for _, o := range Outcomes(b) {
			res.Records = append(res.Records, c.records(in, &res, comp, slug, b, o)...)
		}
		if len(res.Annotations) == found && len(AnnotationEnvironments(in.Annotations[b.ID])) > 0 {
			res.AnnotationsAgree[slug] = true
		}
	}
	SortRecords(res.Records)
	return res
}

// SortRecords sorts records by finish time then key: the order the aggregate applies them in.
func SortRecords(records []store.Record) {
	slices.SortStableFunc(records, func(a, b store.Record) int {
		if d := a.FinishedAt.Compare(b.FinishedAt); d != 0 {
			return d
		}
		return strings.Compare(a.Key, b.Key)
	})
}

// records makes the records of one outcome of a build, one per environment it deploys to.
func (c Classifier) records(in Input, res *Result, comp backstage.Component, slug string, b *buildkite.Build, o Outcome) []store.Record {
	lead := -1.0
	if o.State == statePassed {
		if t, ok := c.commitTime(in, res, comp, b); ok {
			lead = max(0, o.FinishedAt.Sub(t).Seconds())
		}
	}
	wait := -1.0
	if b.Jobs != nil && c.cfg.ApprovalTiming != config.ApprovalTimingOff {
		wait = approvalWaitIn(b.Jobs, o)
	}
	var out []store.Record
	targets := c.finishedTargets(in, res, b, slug, o.State)
	var by, notes string
	if c.cfg.KeepPeopleAndNotes {
		by, notes = deployedBy(b), releaseNotes(b)
	}
	if fb, seen := res.EnvironmentFallback[slug]; !seen || fb {
		res.EnvironmentFallback[slug] = targets[0].Fallback
	}
	for _, t := range targets {
		out = append(out, store.Record{
			Key:                 recordKey(b.ID, o, t.Environment),
			Organization:        in.Organization,
			Pipeline:            in.Organization + "/" + slug,
			Component:           comp.Label,
			Environment:         t.Environment,
			State:               o.State,
			BuildID:             b.ID,
			BuildNumber:         b.Number,
			WebURL:              b.WebURL,
			Commit:              b.Commit,
			Version:             t.Version,
			CreatedAt:           b.CreatedAt.Time,
			StartedAt:           o.StartedAt,
			FinishedAt:          o.FinishedAt,
			LeadTimeSeconds:     lead,
			ApprovalWaitSeconds: wait,
			DeployedBy:          by,
			ReleaseNotes:        notes,
		})
	}
	return out
}

// recordKey is the dedup key of an outcome: a failed outcome by its attempt ordinal, which every
// exporter derives alike however it saw the failure (live, or from the retried job later); the
// others, and a failure whose jobs could not be read, by their finish time, which no later
// retry changes for them (a retry makes a new outcome with a new finish time).
func recordKey(buildID string, o Outcome, env string) string {
	if o.State == stateFailed && o.Attempt >= 0 {
		return store.AttemptKey(buildID, o.Attempt, env)
	}
	return store.Key(buildID, o.FinishedAt, env)
}

// commitTime is when the build's commit was made, for lead time: the configured meta-data key
// when set and readable, else the earliest build of the commit in the component's pipelines,
// in this cycle or stored.
func (c Classifier) commitTime(in Input, res *Result, comp backstage.Component, b *buildkite.Build) (time.Time, bool) {
	if k := c.cfg.CommitTimeMetaDataKey; k != "" {
		if t, ok := parseTimeValue(b.MetaData[k]); ok {
			return t, true
		}
	}
	if !isCommit(b.Commit) {
		return time.Time{}, false
	}
	key := store.CommitKey(comp.Label, b.Commit)
	t, ok := res.Commits[key]
	if in.CommitFirstSeen != nil {
		if old, found := in.CommitFirstSeen(key); found && (!ok || old.Before(t)) {
			t, ok = old, true
		}
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
func (c Classifier) observeOpen(res *Result, comp backstage.Component, b *buildkite.Build, now time.Time) {
	var running, awaiting bool
	var since time.Time
	switch {
	case b.Blocked:
		res.Blocked[b.ID] = true
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
	for _, t := range c.targets(b, b.PipelineSlug()) {
		k := EnvKey{Component: comp.Label, Environment: t.Environment}
		l := res.Live[k]
		if running {
			l.Running++
			l.RunningSince = earliest(l.RunningSince, since)
		} else {
			l.Awaiting++
			l.AwaitingSince = earliest(l.AwaitingSince, since)
		}
		res.Live[k] = l
	}
}

// blockedSince estimates when a build reached its block step without fetching jobs: the finish
// time it got when it blocked, else its start, else its creation.
func blockedSince(b *buildkite.Build) time.Time {
	return firstSet(b.FinishedAt.Time, b.StartedAt.Time, b.CreatedAt.Time)
}

func earliest(a, b time.Time) time.Time {
	if a.IsZero() || (!b.IsZero() && b.Before(a)) {
		return b
	}
	return a
}
