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
	Number     int       `json:"number"`
	FinishedAt time.Time `json:"finished_at"`
	Version    string    `json:"version,omitempty"`
}

// applyLastBuild keeps r's build when it finished no earlier than the one kept: of two records
// finishing at the same time the later applied wins, as for what is deployed.
func (a *Aggregate) applyLastBuild(r store.Record) {
	if a.LastBuilds == nil {
		a.LastBuilds = map[string]*lastBuild{}
	}
	k := joinKey(r.Component, r.Environment, r.Pipeline, r.State)
	if lb := a.LastBuilds[k]; lb != nil && r.FinishedAt.Before(lb.FinishedAt) {
		return
	}
	n := r.BuildNumber
	if n < 0 {
		n = 0
	}
	a.LastBuilds[k] = &lastBuild{Number: n, FinishedAt: r.FinishedAt, Version: r.Version}
}

// fillLastBuilds derives what it can of LastBuilds for a base written before the field existed:
// the passed build of what each environment runs now (kept since builds were linked). The
// failed and canceled series of such a base stay absent until their next record.
func (a *Aggregate) fillLastBuilds() {
	if a.LastBuilds != nil {
		return
	}
	a.LastBuilds = map[string]*lastBuild{}
	for ek, es := range a.Envs {
		if es == nil || es.DeployedPipeline == "" || es.DeployedBuildNumber <= 0 || es.DeployedAt.IsZero() {
			continue
		}
		c, env, ok := strings.Cut(ek, "\x00")
		if !ok {
			continue
		}
		a.LastBuilds[joinKey(c, env, es.DeployedPipeline, statePassed)] = &lastBuild{
			Number: es.DeployedBuildNumber, FinishedAt: es.DeployedAt, Version: es.DeployedVersion,
		}
	}
}

// lastBuilds fills d.Last from the aggregate for component c in env.
func (a *Aggregate) lastBuilds(c, env string, d *snapshot.PipelineDeployments) {
	for i, st := range snapshot.States {
		if lb := a.LastBuilds[joinKey(c, env, d.Pipeline, st)]; lb != nil && lb.Number > 0 {
			d.Last[i] = snapshot.LastBuild{Number: lb.Number, FinishedAt: lb.FinishedAt, Version: lb.Version}
		}
	}
}
