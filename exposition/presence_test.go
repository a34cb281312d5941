package exposition

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// header is the HELP and TYPE lines of the named family, for hand-written expectations.
func header(name string) string {
	for _, f := range families {
		if f.name == name {
			return "# HELP " + f.name + " " + f.help + "\n# TYPE " + f.name + " " + strings.ToLower(f.typ.String()) + "\n"
		}
	}
	panic("no family " + name)
}

func oneEnv(e snapshot.Environment) *snapshot.Snapshot {
	return &snapshot.Snapshot{Components: []snapshot.Component{{Label: "svc", Pipelines: []string{"acme/svc"}, Environments: []snapshot.Environment{e}}}}
}

// TestPresence checks each presence rule of the legacy collector on one environment, against
// hand-written expositions.
func TestPresence(t *testing.T) {
	t0 := time.Unix(1_800_000_000, 0)
	cases := []struct {
		name  string
		env   snapshot.Environment
		names []string
		want  string
	}{
		{
			name:  "idle environment: the gauges that always exist, zero, and no _since",
			env:   snapshot.Environment{Name: "prod", RunningSince: t0, AwaitingSince: t0},
			names: []string{"buildkite_deployments_running", "buildkite_deployment_running_since_timestamp_seconds", "buildkite_deployments_awaiting_approval", "buildkite_deployment_awaiting_approval_since_timestamp_seconds", "buildkite_deployment_failing", "buildkite_deployment_info"},
			want: header("buildkite_deployment_failing") + `buildkite_deployment_failing{component="svc",environment="prod"} 0
` + header("buildkite_deployments_awaiting_approval") + `buildkite_deployments_awaiting_approval{component="svc",environment="prod"} 0
` + header("buildkite_deployments_running") + `buildkite_deployments_running{component="svc",environment="prod"} 0
`,
		},
		{
			name:  "running and awaiting: the _since timestamps appear",
			env:   snapshot.Environment{Name: "prod", Running: 2, RunningSince: t0, Awaiting: 1, AwaitingSince: t0.Add(time.Second), Failing: true},
			names: []string{"buildkite_deployments_running", "buildkite_deployment_running_since_timestamp_seconds", "buildkite_deployments_awaiting_approval", "buildkite_deployment_awaiting_approval_since_timestamp_seconds", "buildkite_deployment_failing"},
			want: header("buildkite_deployment_awaiting_approval_since_timestamp_seconds") + `buildkite_deployment_awaiting_approval_since_timestamp_seconds{component="svc",environment="prod"} 1.800000001e+09
` + header("buildkite_deployment_failing") + `buildkite_deployment_failing{component="svc",environment="prod"} 1
` + header("buildkite_deployment_running_since_timestamp_seconds") + `buildkite_deployment_running_since_timestamp_seconds{component="svc",environment="prod"} 1.8e+09
` + header("buildkite_deployments_awaiting_approval") + `buildkite_deployments_awaiting_approval{component="svc",environment="prod"} 1
` + header("buildkite_deployments_running") + `buildkite_deployments_running{component="svc",environment="prod"} 2
`,
		},
		{
			name:  "every pipeline has its three states, zero or not",
			env:   snapshot.Environment{Name: "prod", Deployments: []snapshot.PipelineDeployments{{Pipeline: "acme/a"}, {Pipeline: "acme/b", Total: [3]uint64{4, 0, 0}}}},
			names: []string{"buildkite_deployments_total"},
			want: header("buildkite_deployments_total") + `buildkite_deployments_total{component="svc",environment="prod",pipeline="acme/a",state="canceled"} 0
buildkite_deployments_total{component="svc",environment="prod",pipeline="acme/a",state="failed"} 0
buildkite_deployments_total{component="svc",environment="prod",pipeline="acme/a",state="passed"} 0
buildkite_deployments_total{component="svc",environment="prod",pipeline="acme/b",state="canceled"} 0
buildkite_deployments_total{component="svc",environment="prod",pipeline="acme/b",state="failed"} 0
buildkite_deployments_total{component="svc",environment="prod",pipeline="acme/b",state="passed"} 4
`,
		},
		{
			name: "last build numbers only for the states with a known build",
			env: snapshot.Environment{Name: "prod", Deployments: []snapshot.PipelineDeployments{
				{Pipeline: "acme/a", Last: [3]snapshot.LastBuild{{Number: 12}, {}, {Number: 9}}},
				{Pipeline: "acme/b"},
			}},
			names: []string{"buildkite_deployment_last_build_number"},
			want: header("buildkite_deployment_last_build_number") + `buildkite_deployment_last_build_number{component="svc",environment="prod",pipeline="acme/a",state="canceled"} 9
buildkite_deployment_last_build_number{component="svc",environment="prod",pipeline="acme/a",state="passed"} 12
`,
		},
		{
			name: "durations and last finishes only for the states observed; other histograms only when observed",
			env: snapshot.Environment{Name: "prod",
				Duration:     [3]*snapshot.Histogram{nil, {Bounds: []float64{60}, Counts: []uint64{0, 1}, Sum: 90, Count: 1}},
				LastFinished: [3]time.Time{{}, {}, t0},
			},
			names: []string{"buildkite_deployment_duration_seconds", "buildkite_deployment_last_finished_timestamp_seconds", "buildkite_deployment_lead_time_seconds", "buildkite_deployment_recovery_seconds", "buildkite_deployment_approval_wait_seconds"},
			want: header("buildkite_deployment_duration_seconds") + `buildkite_deployment_duration_seconds_bucket{component="svc",environment="prod",state="failed",le="60"} 0
buildkite_deployment_duration_seconds_bucket{component="svc",environment="prod",state="failed",le="+Inf"} 1
buildkite_deployment_duration_seconds_sum{component="svc",environment="prod",state="failed"} 90
buildkite_deployment_duration_seconds_count{component="svc",environment="prod",state="failed"} 1
` + header("buildkite_deployment_last_finished_timestamp_seconds") + `buildkite_deployment_last_finished_timestamp_seconds{component="svc",environment="prod",state="canceled"} 1.8e+09
`,
		},
		{
			name:  "info once deployed, labels sorted; objectives as configured, by slo",
			env:   snapshot.Environment{Name: "prod", Deployed: &snapshot.Deployed{Version: "1.2", Commit: "abc"}, Objectives: []snapshot.Objective{{SLO: "success", Ratio: 0.99}, {SLO: "duration", Ratio: 0.5}}},
			names: []string{"buildkite_deployment_info", "buildkite_deployment_slo_objective_ratio"},
			want: header("buildkite_deployment_info") + `buildkite_deployment_info{commit="abc",component="svc",environment="prod",version="1.2"} 1
` + header("buildkite_deployment_slo_objective_ratio") + `buildkite_deployment_slo_objective_ratio{component="svc",environment="prod",slo="duration"} 0.5
buildkite_deployment_slo_objective_ratio{component="svc",environment="prod",slo="success"} 0.99
`,
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := testutil.GatherAndCompare(NewGatherer(oneEnv(c.env)), strings.NewReader(c.want), c.names...); err != nil {
				t.Error(err)
			}
		})
	}
}

// TestInvalidUTF8 checks that invalid bytes in any label value become U+FFFD instead of making
// client_golang panic or the body invalid.
func TestInvalidUTF8(t *testing.T) {
	bad := "x\xffy"
	s := &snapshot.Snapshot{Components: []snapshot.Component{{
		Label: bad, Pipelines: []string{bad},
		Environments: []snapshot.Environment{{
			Name:        bad,
			Deployments: []snapshot.PipelineDeployments{{Pipeline: bad}},
			Duration:    [3]*snapshot.Histogram{{Bounds: []float64{1}, Counts: []uint64{1, 0}, Count: 1}},
			Deployed:    &snapshot.Deployed{Version: bad, Commit: bad},
			Objectives:  []snapshot.Objective{{SLO: bad, Ratio: 1}},
		}},
	}}}
	mfs, err := NewGatherer(s).Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v := lp.GetValue(); v != "x\uFFFDy" && v != "" && lp.GetName() != "state" && lp.GetName() != "reason" {
					t.Errorf("%s: %s=%q", mf.GetName(), lp.GetName(), v)
				}
			}
		}
	}
	for k := range numKinds {
		sameFamilies(t, decode(t, encoded(t, s, k, 1), wireFormat[k]), decode(t, gathered(t, NewGatherer(s), wireFormat[k]), wireFormat[k]))
	}
}
