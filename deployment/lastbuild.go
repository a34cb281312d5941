package deployment

import (
	"strings"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// lastBuild is the latest finished deployment build of one (component, environment, pipeline,
// state): the value of buildkite_deployment_last_build_number, which alerts turn into a link to
// the build (https://buildkite.com/<pipeline>/builds/<number>), and what badges and the rebuild
// command name. It lives in the Aggregate, the compaction base, so it survives restarts and
// compaction like the counters.
type lastBuild struct {
	// Number is 0 when the latest record of the series has no build number (a log written
	// before numbers were kept): the series is then absent rather than naming an older build.
	Number int `json:"number"`
	// FinishedAt is the finish time in Unix nanoseconds (0: none), not a time.Time: there is one
	// per (component, environment, pipeline, state), 90,000 at 10,000 components.
	FinishedAt int64  `json:"finished_at"`
	Version    string `json:"version,omitempty"`
}

// lastBuilds are the latest builds of one (component, environment, pipeline), indexed like
// snapshot.States: one map entry per pipeline key (the key string a.Pipelines already holds)
// instead of one per state, updated in place.
type lastBuilds [snapshot.NumStates]lastBuild

// applyLastBuild keeps r's build when it finished no earlier than the one kept: of two records
// finishing at the same time the later applied wins, as for what is deployed. pk is r's
// (component, environment, pipeline) key.
func (a *Aggregate) applyLastBuild(r store.Record, pk string) {
	i := snapshot.StateIndex(r.State)
	if i < 0 {
		return
	}
	if a.LastBuilds == nil {
		a.LastBuilds = map[string]*lastBuilds{}
	}
	lbs := a.LastBuilds[pk]
	if lbs == nil {
		lbs = &lastBuilds{}
		a.LastBuilds[pk] = lbs
	}
	at := r.FinishedAt.UnixNano()
	if lb := &lbs[i]; lb.FinishedAt != 0 && at < lb.FinishedAt {
		return
	}
	n := r.BuildNumber
	if n < 0 {
		n = 0
	}
	lbs[i] = lastBuild{Number: n, FinishedAt: at, Version: r.Version}
}

// fillLastBuilds derives what it can of LastBuilds for a base written before the field existed:
// the passed build of what each environment runs now (kept since builds were linked). The
// failed and canceled series of such a base stay absent until their next record.
func (a *Aggregate) fillLastBuilds() {
	if a.LastBuilds != nil {
		return
	}
	a.LastBuilds = map[string]*lastBuilds{}
	for ek, es := range a.Envs {
		if es == nil || es.DeployedPipeline == "" || es.DeployedBuildNumber <= 0 || es.DeployedAt.IsZero() {
			continue
		}
		c, env, ok := strings.Cut(ek, "\x00")
		if !ok {
			continue
		}
		lbs := &lastBuilds{}
		lbs[snapshot.StateIndex(statePassed)] = lastBuild{
			Number: es.DeployedBuildNumber, FinishedAt: es.DeployedAt.UnixNano(), Version: es.DeployedVersion,
		}
		a.LastBuilds[joinKey(c, env, es.DeployedPipeline)] = lbs
	}
}

// fill fills d.Last with the builds kept.
func (lbs *lastBuilds) fill(d *snapshot.PipelineDeployments) {
	for i, lb := range lbs {
		if lb.Number > 0 {
			d.Last[i] = snapshot.LastBuild{Number: lb.Number, FinishedAt: time.Unix(0, lb.FinishedAt).UTC(), Version: lb.Version}
		}
	}
}
