package exposition

import "github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"

// eachLastBuildNumber is one series per (component, environment, pipeline, state) with a known
// latest build. The build number is the value, never a label (DESIGN.md): the series stay one
// per state however many builds run.
func eachLastBuildNumber(s *snapshot.Snapshot, sr *series, emit func()) {
	forEnv(s, func(comp, env string, e *snapshot.Environment) {
		for k := range e.Deployments {
			d := &e.Deployments[k]
			p := valid(d.Pipeline)
			for _, st := range stateOrder {
				if n := d.Last[st].Number; n > 0 {
					sr.values = [maxLabels]string{comp, env, p, snapshot.States[st]}
					sr.value = float64(n)
					emit()
				}
			}
		}
	})
}
