package deployment

import (
	"fmt"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/cputime"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// BenchInput returns an aggregate and catalog of n components × 3 environments. worst: each
// environment has passed, failed and canceled deployments, recoveries, lead times, approvals, a
// running and an awaiting build, so every per-environment series exists. Otherwise (typical):
// passed and failed deployments with lead times and recoveries, no block steps, nothing running.
func benchInput(n int, worst bool) (*Aggregate, SnapshotInput) {
	agg := NewAggregate()
	var comps []backstage.Component
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	live := map[EnvKey]Live{}
	for i := range n {
		name := fmt.Sprintf("component-%04d", i)
		comps = append(comps, backstage.Component{Name: name, Label: name, Owner: "team",
			Pipelines: []backstage.PipelineRef{{Org: "acme", Pipeline: name + "-deploy"}}})
		for e, env := range []string{"production", "staging", "development"} {
			states := []string{"failed", "passed", "passed"}
			wait := -1.0
			if worst {
				states, wait = []string{"failed", "passed", "canceled", "passed"}, 120
				live[EnvKey{name, env}] = Live{Running: 1, RunningSince: base, Awaiting: 1, AwaitingSince: base}
			}
			for j, st := range states {
				at := base.Add(time.Duration(i*100+e*10+j) * time.Minute)
				agg.Apply(store.Record{
					Key: fmt.Sprint(i, e, j), Pipeline: "acme/" + name + "-deploy", Component: name, Environment: env,
					State: st, Commit: sha(i), Version: fmt.Sprintf("1.%d.%d", i, j),
					StartedAt: at.Add(-10 * time.Minute), FinishedAt: at, LeadTimeSeconds: 3600, ApprovalWaitSeconds: wait,
				})
			}
		}
	}
	return agg, SnapshotInput{Config: config.Default(), Catalog: comps, Live: live, Polled: true, Taken: base}
}

// BenchmarkSnapshot measures what each poll cycle spends building the snapshot of 1,000
// components × 3 environments (every series present).
func BenchmarkSnapshot(b *testing.B) {
	agg, in := benchInput(1000, true)
	cpu := cputime.Process()
	for b.Loop() {
		agg.Snapshot(in)
	}
	b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
}
