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
	withRecords := map[string]bool{} // component\x00pipeline
	for k := range a.Pipelines {
		parts := strings.Split(k, "\x00")
		if len(parts) != 3 || !inCatalog[parts[0]] {
			continue
		}
		add(parts[0], parts[1], parts[2])
		withRecords[joinKey(parts[0], parts[2])] = true
	}
	for _, comp := range in.Catalog {
		for _, p := range comp.Pipelines {
			if withRecords[joinKey(comp.Label, p.String())] {
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
			sc.Environments = append(sc.Environments, a.environment(cfg, comp, env, known[comp.Label][env], in.Live))
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
func (a *Aggregate) environment(cfg *config.Config, comp backstage.Component, env string, pipelines map[string]bool, live map[EnvKey]Live) snapshot.Environment {
	c := comp.Label
	ek := envKey(c, env)
	e := snapshot.Environment{Name: env}
	for _, p := range sortedKeys(pipelines) {
		d := snapshot.PipelineDeployments{Pipeline: p}
		for i, st := range snapshot.States {
			d.Total[i] = a.Deployments[joinKey(c, env, p, st)]
		}
		a.lastBuilds(c, env, &d)
		d.Created = a.PipelineCreated[joinKey(c, env, p)]
		e.Deployments = append(e.Deployments, d)
	}
	for i, st := range snapshot.States {
		sk := joinKey(c, env, st)
		if h := a.Duration[sk]; h != nil {
			e.Duration[i] = h.snapshot(config.DurationBuckets)
		}
		e.LastFinished[i] = a.LastFinished[sk]
	}
	if h := a.LeadTime[ek]; h != nil {
		e.LeadTime = h.snapshot(leadTimeBuckets)
	}
	if h := a.Recovery[ek]; h != nil {
		e.Recovery = h.snapshot(recoveryBuckets)
	}
	if h := a.ApprovalWait[ek]; h != nil {
		e.ApprovalWait = h.snapshot(approvalWaitBuckets)
	}
	if es := a.Envs[ek]; es != nil {
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
