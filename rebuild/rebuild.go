// Package rebuild finds the failing deployment of a component's environment and rebuilds it
// through the Buildkite REST API: the rebuild command.
//
// Whether a deployment is failing is decided from the API, not from a running exporter: the
// latest builds of the component's pipelines are listed and classified exactly as the exporter
// classifies them (deployment.Classifier, Aggregate and Snapshot), so the command needs nothing
// but a token, sees builds that finished after the exporter's last poll, and cannot act on a
// stale or unreachable exporter's view. A rebuild replays the build's commit, so rebuilding a
// failure after a later pass would be a rollback: the command refuses then, naming the pass.
package rebuild

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// BuildsPerPipeline is how many of each pipeline's latest builds are read: one page. A failure
// older than that many builds of its pipeline is not "the latest deployment".
const BuildsPerPipeline = 100

// Plan is the build to rebuild.
type Plan struct {
	Component, Environment string
	Pipeline               string // "<org>/<pipeline>"
	Build                  buildkite.Build
	Version                string // as the exporter reads it (meta-data, else the tag)
}

// WebURL is the build's page on Buildkite.
func (p *Plan) WebURL() string {
	if p.Build.WebURL != "" {
		return p.Build.WebURL
	}
	return fmt.Sprintf("https://buildkite.com/%s/builds/%d", p.Pipeline, p.Build.Number)
}

// NotFailingError is the refusal when the latest deployment did not fail.
type NotFailingError struct {
	Component, Environment string
	// LaterPass is the latest passed deployment, when it came after the latest failure (or
	// there was no failure); nil when nothing passed.
	LaterPass    *snapshot.LastBuild
	PassPipeline string
	// Failed is the latest failed deployment, nil when none is among the builds read.
	Failed         *snapshot.LastBuild
	FailedPipeline string
}

func (e *NotFailingError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "the latest deployment of %s to %s is not failing", e.Component, e.Environment)
	switch {
	case e.Failed != nil && e.LaterPass != nil:
		fmt.Fprintf(&b, ": build #%d of %s%s passed at %s, after build #%d of %s failed; rebuilding the failure would deploy its older commit (a rollback), so nothing was rebuilt",
			e.LaterPass.Number, e.PassPipeline, versionText(e.LaterPass.Version), e.LaterPass.FinishedAt.UTC().Format(time.RFC3339),
			e.Failed.Number, e.FailedPipeline)
	case e.Failed == nil:
		fmt.Fprintf(&b, ": no failed deployment among the latest %d builds of each of its pipelines", BuildsPerPipeline)
	}
	return b.String()
}

func versionText(v string) string {
	if v == "" {
		return ""
	}
	return " (version " + v + ")"
}

// ErrRunning is the refusal while a deployment of the environment runs: it may pass, and a
// rebuild would race it.
var ErrRunning = errors.New("a deployment of this environment is running now; wait for it to finish")

// Find lists the latest builds of comp's pipelines and returns the build to rebuild for env: the
// latest failed deployment, if the latest finished (non-canceled) deployment of env failed.
func Find(ctx context.Context, c *buildkite.Client, cfg *config.Config, comp backstage.Component, env string, now time.Time) (*Plan, error) {
	if cfg == nil {
		cfg = config.Default()
	}
	env = cfg.NormalizeEnvironment(env)
	byOrg := map[string]*deployment.Input{}
	builds := map[string]buildkite.Build{} // "<org>/<pipeline>#<number>"
	for _, p := range comp.Pipelines {
		in := byOrg[p.Org]
		if in == nil {
			in = &deployment.Input{Organization: p.Org, Pipelines: map[string]backstage.Component{}, Now: now}
			byOrg[p.Org] = in
		}
		in.Pipelines[p.Pipeline] = comp
		err := c.ListPipelineBuilds(ctx, p.Org, p.Pipeline, buildkite.ListBuildsOptions{ExcludeJobs: true, PerPage: BuildsPerPipeline},
			func(page []buildkite.Build) error {
				for _, b := range page {
					// The listing omits nothing the classifier reads but the pipeline, which
					// it names by slug from the build's URL.
					builds[fmt.Sprintf("%s#%d", p.String(), b.Number)] = b
					if b.Finished() {
						in.Finished = append(in.Finished, b)
					} else {
						in.Open = append(in.Open, b)
					}
				}
				return buildkite.ErrStopPaging
			})
		if err != nil {
			return nil, fmt.Errorf("listing the builds of %s: %w", p, err)
		}
	}
	cls := deployment.NewClassifier(cfg)
	a := deployment.NewAggregate()
	live := map[deployment.EnvKey]deployment.Live{}
	var records []store.Record
	for _, org := range slices.Sorted(maps.Keys(byOrg)) {
		res := cls.Classify(*byOrg[org])
		records = append(records, res.Records...)
		for k, l := range res.Live {
			live[k] = live[k].Add(l)
		}
	}
	deployment.SortRecords(records)
	for _, r := range records {
		a.Apply(r)
	}
	s := a.Snapshot(deployment.SnapshotInput{Config: cfg, Catalog: []backstage.Component{comp}, Live: live, Polled: true, Taken: now})
	var e *snapshot.Environment
	var names []string
	for i := range s.Components[0].Environments {
		ce := &s.Components[0].Environments[i]
		names = append(names, ce.Name)
		if ce.Name == env {
			e = ce
		}
	}
	if e == nil {
		return nil, fmt.Errorf("component %s has no environment %q among its latest builds; it has: %s", comp.Label, env, strings.Join(names, ", "))
	}
	if e.Running > 0 {
		return nil, fmt.Errorf("%s to %s: %w", comp.Label, env, ErrRunning)
	}
	failedPipe, failed := latest(e, snapshot.StateFailed)
	passPipe, pass := latest(e, snapshot.StatePassed)
	if !e.Failing || failed == nil {
		nf := &NotFailingError{Component: comp.Label, Environment: env, Failed: failed, FailedPipeline: failedPipe}
		if pass != nil && (failed == nil || !pass.FinishedAt.Before(failed.FinishedAt)) {
			nf.LaterPass, nf.PassPipeline = pass, passPipe
		}
		return nil, nf
	}
	b, ok := builds[fmt.Sprintf("%s#%d", failedPipe, failed.Number)]
	if !ok {
		return nil, fmt.Errorf("the failing build #%d of %s is not among the builds listed", failed.Number, failedPipe)
	}
	return &Plan{Component: comp.Label, Environment: env, Pipeline: failedPipe, Build: b, Version: failed.Version}, nil
}

// latest is the latest finished deployment build of e in state, of any pipeline.
func latest(e *snapshot.Environment, state string) (string, *snapshot.LastBuild) {
	i := snapshot.StateIndex(state)
	var pipe string
	var best *snapshot.LastBuild
	for k := range e.Deployments {
		l := &e.Deployments[k].Last[i]
		if l.Number > 0 && (best == nil || l.FinishedAt.After(best.FinishedAt)) {
			pipe, best = e.Deployments[k].Pipeline, l
		}
	}
	return pipe, best
}

// MissingScopeError is the refusal of a token without write_builds.
type MissingScopeError struct{ Scopes []string }

func (e *MissingScopeError) Error() string {
	return fmt.Sprintf("the --rebuild.token-file token lacks the %s scope a rebuild needs (it has: %s); create a token with %s (and %s) at https://buildkite.com/user/api-access-tokens. The exporter's own token stays read-only",
		buildkite.ScopeWriteBuilds, strings.Join(e.Scopes, ", "), buildkite.ScopeWriteBuilds, buildkite.ScopeReadBuilds)
}

// CheckToken asks Buildkite which scopes the rebuild token has (GET /v2/access-token needs
// none) and refuses one without write_builds before anything else is done.
func CheckToken(ctx context.Context, c *buildkite.Client) error {
	tok, err := c.AccessToken(ctx)
	if err != nil {
		return fmt.Errorf("checking the rebuild token: %w", err)
	}
	if !slices.Contains(tok.Scopes, buildkite.ScopeWriteBuilds) {
		return &MissingScopeError{Scopes: tok.Scopes}
	}
	return nil
}

// Do rebuilds the plan's build and returns the new build.
func Do(ctx context.Context, c *buildkite.Client, p *Plan) (*buildkite.Build, error) {
	org, pipeline, _ := strings.Cut(p.Pipeline, "/")
	nb, err := c.RebuildBuild(ctx, org, pipeline, p.Build.Number)
	var apiErr *buildkite.APIError
	if errors.As(err, &apiErr) && apiErr.StatusCode == 403 {
		return nil, fmt.Errorf("%w (the --rebuild.token-file token needs %s for %s; a pipeline that disables rebuilds or a token without access to it answers the same)", err, buildkite.ScopeWriteBuilds, p.Pipeline)
	}
	return nb, err
}
