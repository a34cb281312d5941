package exposition

import "github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"

// eachLastBuildNumber is one series per (component, environment, pipeline, state) with a known
// latest build. The build number is the value, never a label (DESIGN.md): the series stay one
// per state however many builds run.
func eachLastBuildNumber(s *snapshot.Snapshot, sr *series, emit func()) {
	forPipelineState(s, sr, func(d *snapshot.PipelineDeployments, st int) {
		if n := d.Last[st].Number; n > 0 {
			sr.value = float64(n)
			emit()
		}
	})
}
