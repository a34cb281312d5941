package collector

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-kit/log/level"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

const (
	severityError   = "error"
	severityWarning = "warning"
)

const (
	// existenceRecheck is how often a linked pipeline of which no build was ever listed is
	// looked up again (GET pipeline: 404, or exists but idle).
	existenceRecheck = 24 * time.Hour
	// existenceCheckEvery spaces the lookups, in poll intervals: one lookup at most every ten
	// cycles keeps them to a tenth of a request a cycle, whatever the number of idle pipelines
	// (at 2,000 annotated pipelines of which most never build, a lookup a cycle would be a
	// third of the steady state's budget). check does them in bulk before deploying.
	existenceCheckEvery = 10
)

// problemState is what an organization's cycles found wrong with its pipelines.
type problemState struct {
	current map[string]snapshot.PipelineProblem // by problemKey
	// exists: the result of the last existence lookup of a pipeline without deployments, and
	// when it was made.
	exists    map[string]bool
	checkedAt map[string]time.Time
	// envFallback: whether the latest cycle with deployments of a pipeline found no
	// environment in their meta-data.
	envFallback map[string]bool
	// listed are the pipelines of which a listing returned a build: they exist.
	listed map[string]bool
	// lastCheck is when the last existence lookup was made.
	lastCheck time.Time
	// annotations: the latest annotation finding of a pipeline, by slug, until a later
	// deployment of it is annotated in agreement (see noteAnnotationsLocked).
	annotations map[string]deployment.AnnotationFinding
}

func newProblemState() problemState {
	return problemState{current: map[string]snapshot.PipelineProblem{}, exists: map[string]bool{},
		checkedAt: map[string]time.Time{}, envFallback: map[string]bool{}, listed: map[string]bool{},
		annotations: map[string]deployment.AnnotationFinding{}}
}

func problemKey(pipeline, reason string) string { return pipeline + "\x00" + reason }

// existenceChecks picks the pipeline of org to look up this cycle, if any: one of which no
// listing ever returned a build, and no lookup was made for a day; one every
// existenceCheckEvery cycles. c.mu is held. None before the first backfill finished: until then
// no pipeline has been listed.
func (c *Collector) existenceChecks(org string, o *orgState, pipelines map[string]backstage.Component, now time.Time) []string {
	ps := &o.problems
	if !o.wm.BackfillDone || now.Sub(ps.lastCheck) < existenceCheckEvery*c.pollInterval {
		return nil
	}
	for _, s := range sortedKeys(pipelines) {
		if ps.listed[s] || c.agg.HasDeployments(pipelines[s].Label, org+"/"+s) || now.Sub(ps.checkedAt[s]) < existenceRecheck {
			continue
		}
		ps.checkedAt[s], ps.lastCheck = now, now
		return []string{s}
	}
	return nil
}

// updateProblems recomputes org's pipeline problems after a successful cycle and logs what
// changed (once per change, not every cycle); c.mu is held.
func (c *Collector) updateProblems(org string, o *orgState, pipelines map[string]backstage.Component, f *fetched, res deployment.Result, now time.Time) {
	ps := &o.problems
	for s, ok := range f.exists {
		ps.exists[s] = ok
	}
	for _, set := range [][]buildkite.Build{f.finished, f.open} {
		for i := range set {
			ps.listed[set[i].PipelineSlug()] = true
		}
	}
	for s, fb := range res.EnvironmentFallback {
		ps.envFallback[s] = fb
	}
	c.noteAnnotationsLocked(org, o, res)
	future := map[string]buildkite.Build{}
	for _, b := range res.Future {
		future[b.PipelineSlug()] = b
	}
	next := map[string]snapshot.PipelineProblem{}
	add := func(slug, reason, severity, msg string) {
		p := snapshot.PipelineProblem{Pipeline: org + "/" + slug, Reason: reason, Severity: severity, Message: msg, Since: now}
		if old, ok := ps.current[problemKey(p.Pipeline, reason)]; ok {
			p.Since = old.Since
		}
		next[problemKey(p.Pipeline, reason)] = p
	}
	for _, s := range sortedKeys(pipelines) {
		full := org + "/" + s
		switch reason := f.unreadable[s]; {
		case reason == snapshot.ReasonNotFound:
			add(s, reason, severityError, fmt.Sprintf("Buildkite answers 404 for the builds of pipeline %s: it was renamed or deleted, the annotation misspells it (it must match the pipeline's address, buildkite.com/%s), or the token may not see it (Buildkite answers 404 then too). Fix the annotation of component %s, or give the token access.", full, full, pipelines[s].Label))
			continue
		case reason == snapshot.ReasonForbidden:
			add(s, reason, severityError, fmt.Sprintf("Buildkite answers 403 for the builds of pipeline %s: the token lacks the read_builds scope for it. Give the token access to it.", full))
			continue
		}
		if !ps.listed[s] && !c.agg.HasDeployments(pipelines[s].Label, full) {
			if ok, checked := ps.exists[s]; checked && !ok {
				add(s, snapshot.ReasonNotFound, severityError, fmt.Sprintf("Pipeline %s does not exist, or the token may not see it (Buildkite answers 404 for both): no build of it can be counted. Fix the annotation of component %s (the slug must match buildkite.com/%s), or give the token access.", full, pipelines[s].Label, full))
			} else if checked {
				add(s, snapshot.ReasonNoDeployments, severityWarning, fmt.Sprintf("Pipeline %s exists but no build of it finished within --history.backfill or since: there is nothing to count yet. Check that component %s deploys with this pipeline.", full, pipelines[s].Label))
			}
		}
		if b, ok := future[s]; ok {
			add(s, snapshot.ReasonFutureTimestamp, severityError, fmt.Sprintf("Build #%d of pipeline %s says it finished at %s, after Buildkite's own clock: it is not counted, so that a damaged timestamp cannot pin what is failing or deployed. Check the build on Buildkite.", b.Number, full, b.FinishedAt.Format(time.RFC3339)))
		}
		if f, ok := ps.annotations[s]; ok {
			add(s, snapshot.ReasonAnnotationMismatch, severityWarning, annotationMessage(full, f))
		}
		if ps.envFallback[s] {
			where := "in their meta-data"
			if _, on := c.annotationsOn(); on {
				where = "in their meta-data nor in a deployment-<environment> annotation"
			}
			add(s, snapshot.ReasonNoEnvironmentMD, severityWarning, fmt.Sprintf("Deployments of pipeline %s name no environment %s, so the pipeline slug or the default environment (%s) is used. Set it in the pipeline: buildkite-agent meta-data set environment <name>.", full, where, c.config().DefaultEnvironment))
		}
	}
	for k, p := range next {
		if _, ok := ps.current[k]; !ok {
			lvl := level.Warn
			if p.Severity == severityError {
				lvl = level.Error
			}
			lvl(c.logger).Log("msg", "Pipeline problem: "+p.Message, "organization", org, "pipeline", p.Pipeline, "reason", p.Reason)
		}
	}
	for k, p := range ps.current {
		if _, ok := next[k]; !ok {
			level.Info(c.logger).Log("msg", "Pipeline problem resolved", "organization", org, "pipeline", p.Pipeline, "reason", p.Reason)
		}
	}
	ps.current = next
}

// noteAnnotationsLocked keeps the annotation findings of a classification (poll or webhook):
// the latest of each pipeline, logged once, dropped when a later deployment of the pipeline is
// annotated in agreement and none disagrees. c.mu is held.
func (c *Collector) noteAnnotationsLocked(org string, o *orgState, res deployment.Result) {
	ps := &o.problems
	found := map[string]bool{}
	for _, f := range res.Annotations {
		found[f.Pipeline] = true
		if old, ok := ps.annotations[f.Pipeline]; ok && old.BuildNumber == f.BuildNumber && old.Kind == f.Kind {
			continue // the overlap read it again
		}
		ps.annotations[f.Pipeline] = f
		level.Warn(c.logger).Log("msg", "Deployment annotation disagrees with what counted the build", "organization", org,
			"pipeline", org+"/"+f.Pipeline, "build", f.BuildNumber, "kind", f.Kind, "detail", f.Detail)
	}
	for s := range res.AnnotationsAgree {
		if !found[s] {
			delete(ps.annotations, s)
		}
	}
}

// annotationMessage is the /status text of an annotation finding of pipeline full.
func annotationMessage(full string, f deployment.AnnotationFinding) string {
	var fix string
	switch f.Kind {
	case deployment.FindingMetaData:
		fix = "Make the annotation's context (deployment-<environment>) and the environment meta-data name the same environment."
	case deployment.FindingOutcome:
		fix = "Annotate with --style success only after the deployment succeeded, and --style error when it failed."
	default:
		fix = "The deployment stays where it was counted; set the environment meta-data so that every read of the build agrees."
	}
	return fmt.Sprintf("Build #%d of pipeline %s: %s. %s", f.BuildNumber, full, f.Detail, fix)
}

// pipelineProblemsLocked lists the problems of the active organizations, sorted; c.mu is held.
func (c *Collector) pipelineProblemsLocked() []snapshot.PipelineProblem {
	var out []snapshot.PipelineProblem
	for _, o := range c.orgs {
		if !o.active {
			continue
		}
		for _, p := range o.problems.current {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, func(a, b snapshot.PipelineProblem) int {
		if d := strings.Compare(a.Pipeline, b.Pipeline); d != 0 {
			return d
		}
		return strings.Compare(a.Reason, b.Reason)
	})
	return out
}
