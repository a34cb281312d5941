package deployment

import (
	"slices"
	"strings"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// SnapshotInput is what a snapshot is made of besides the aggregate.
type SnapshotInput struct {
	Config  *config.Config
	Catalog []backstage.Component
	// Live is what the latest poll of each organization saw of unfinished builds.
	Live map[EnvKey]Live
	// Polled is set once a poll cycle of every organization has ended.
	Polled bool
	Taken  time.Time
}

// Snapshot renders the deployment state of the components in the catalog. Components no longer
// in the catalog are left out; their history stays in the log and comes back with them. Every
// known (component, environment, pipeline) is listed: seen in a record or, for a catalog pipeline
// without any record yet, the environment its slug names or the default one. The result shares
// nothing mutable with a: later records do not change it.
func (a *Aggregate) Snapshot(in SnapshotInput) *snapshot.Snapshot {
	cfg := in.Config
	cls := NewClassifier(cfg)
	// known: per component, environment → pipelines.
	known := map[string]map[string]map[string]bool{}
	add := func(c, env, p string) {
		if known[c] == nil {
			known[c] = map[string]map[string]bool{}
		}
		if env == "" {
			return
		}
		if known[c][env] == nil {
			known[c][env] = map[string]bool{}
		}
		if p != "" {
			known[c][env][p] = true
		}
	}
	inCatalog := map[string]bool{}
	for _, comp := range in.Catalog {
		inCatalog[comp.Label] = true
		add(comp.Label, "", "")
	}
	for k := range a.Pipelines {
		c, rest, _ := strings.Cut(k, "\x00")
		env, p, ok := strings.Cut(rest, "\x00")
		if !ok || strings.Contains(p, "\x00") || !inCatalog[c] {
			continue
		}
		add(c, env, p)
	}
	for _, comp := range in.Catalog {
		for _, p := range comp.Pipelines {
			if a.HasDeployments(comp.Label, p.String()) {
				continue
			}
			env := cls.SlugEnvironment(p.Pipeline)
			if env == "" {
				env = cfg.DefaultEnvironment
			}
			add(comp.Label, cfg.NormalizeEnvironment(env), p.String())
		}
	}

	s := &snapshot.Snapshot{Taken: in.Taken, Polled: in.Polled}
	var kb keyBuf
	unknown := map[string]bool{}
	comps := slices.Clone(in.Catalog)
	slices.SortFunc(comps, func(x, y backstage.Component) int { return strings.Compare(x.Label, y.Label) })
	for i, comp := range comps {
		if i > 0 && comps[i-1].Label == comp.Label {
			continue // one component per label; the catalog already refuses duplicates
		}
		sc := snapshot.Component{
			Label: comp.Label, Ref: comp.Ref, Owner: comp.Owner, System: comp.System, Lifecycle: comp.Lifecycle,
		}
		for _, p := range comp.Pipelines {
			sc.Pipelines = append(sc.Pipelines, p.String())
		}
		for _, env := range sortedKeys(known[comp.Label]) {
			if !cfg.KnownEnvironment(env) {
				unknown[env] = true
			}
			sc.Environments = append(sc.Environments, a.environment(&kb, cfg, comp, env, known[comp.Label][env], in.Live))
		}
		s.Components = append(s.Components, sc)
	}
	s.UnknownEnvironments = sortedKeys(unknown)
	for i, reason := range snapshot.ExemplarDropReasons {
		s.ExemplarsDropped[i] = a.ExemplarsDropped[reason]
	}
	return s
}

// environment renders one (component, environment).
func (a *Aggregate) environment(kb *keyBuf, cfg *config.Config, comp backstage.Component, env string, pipelines map[string]bool, live map[EnvKey]Live) snapshot.Environment {
	c := comp.Label
	e := snapshot.Environment{Name: env}
	ps := sortedKeys(pipelines)
	e.Deployments = make([]snapshot.PipelineDeployments, 0, len(ps))
	for _, p := range ps {
		d := snapshot.PipelineDeployments{Pipeline: p}
		for i, st := range snapshot.States {
			d.Total[i] = a.Deployments[string(kb.of(c, env, p, st))]
		}
		if lbs := a.LastBuilds[string(kb.of(c, env, p))]; lbs != nil {
			lbs.fill(&d)
		}
		d.Created = a.PipelineCreated[string(kb.of(c, env, p))]
		e.Deployments = append(e.Deployments, d)
	}
	for i, st := range snapshot.States {
		if h := a.Duration[string(kb.of(c, env, st))]; h != nil {
			e.Duration[i] = h.snapshot(config.DurationBuckets)
		}
		e.LastFinished[i] = a.LastFinished[string(kb.of(c, env, st))]
	}
	if h := a.LeadTime[string(kb.of(c, env))]; h != nil {
		e.LeadTime = h.snapshot(leadTimeBuckets)
	}
	if h := a.Recovery[string(kb.of(c, env))]; h != nil {
		e.Recovery = h.snapshot(recoveryBuckets)
	}
	if h := a.ApprovalWait[string(kb.of(c, env))]; h != nil {
		e.ApprovalWait = h.snapshot(approvalWaitBuckets)
	}
	if es := a.Envs[string(kb.of(c, env))]; es != nil {
		e.Failing = es.Failing
		if !es.DeployedAt.IsZero() {
			e.Deployed = &snapshot.Deployed{Version: es.DeployedVersion, Commit: es.DeployedCommit, FinishedAt: es.DeployedAt,
				Pipeline: es.DeployedPipeline, BuildNumber: es.DeployedBuildNumber, WebURL: es.DeployedWebURL,
				DeployedBy: es.DeployedBy, ReleaseNotes: es.DeployedNotes}
		}
	}
	l := live[EnvKey{Component: c, Environment: env}]
	e.Running, e.Awaiting = l.Running, l.Awaiting
	if l.Running > 0 {
		e.RunningSince = l.RunningSince
	}
	if l.Awaiting > 0 {
		e.AwaitingSince = l.AwaitingSince
	}
	obj := cfg.ObjectivesFor(c, comp.Owner, env)
	for _, slo := range []string{config.SLOSuccess, config.SLODuration} {
		if v, ok := obj[slo]; ok {
			e.Objectives = append(e.Objectives, snapshot.Objective{SLO: slo, Ratio: v})
		}
	}
	return e
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
