package exposition

import (
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

var (
	durationBounds = []float64{60, 300, 600, 900, 1800, 3600}
	leadBounds     = []float64{3600, 86400, 604800, 2592000}
	approvalBounds = []float64{300, 3600, 86400}
	base           = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

// hist is a histogram of obs, with their native buckets (counted here with a map, not the
// deployment package's sorted insert).
func hist(bounds []float64, obs ...float64) *snapshot.Histogram {
	h := &snapshot.Histogram{Bounds: bounds, Counts: make([]uint64, len(bounds)+1), Native: &snapshot.Native{}}
	native := map[int32]uint32{}
	for _, o := range obs {
		i := 0
		for i < len(bounds) && o > bounds[i] {
			i++
		}
		h.Counts[i]++
		h.Sum += o
		h.Count++
		if o <= snapshot.NativeZeroThreshold {
			h.Native.ZeroCount++
		} else {
			native[snapshot.NativeIndex(o)]++
		}
	}
	for _, idx := range slices.Sorted(maps.Keys(native)) {
		h.Native.Buckets = append(h.Native.Buckets, snapshot.NativeBucket{Index: idx, Count: native[idx]})
	}
	return h
}

// withExemplars gives h a created time and exemplars, each in the bucket of its value.
func withExemplars(h *snapshot.Histogram, created time.Time, exs ...*snapshot.Exemplar) *snapshot.Histogram {
	h.Created = created.UnixNano()
	h.Exemplars = make([]*snapshot.Exemplar, len(h.Counts))
	for _, e := range exs {
		i := 0
		for i < len(h.Bounds) && e.Value > h.Bounds[i] {
			i++
		}
		h.Exemplars[i] = e
	}
	return h
}

func ex(v float64, minutes int, build, commit string) *snapshot.Exemplar {
	return &snapshot.Exemplar{Value: v, Time: at(minutes).UnixNano(), Build: build, Commit: commit}
}

func at(minutes int) time.Time { return base.Add(time.Duration(minutes) * time.Minute) }

// fixture covers every family and presence rule:
//   - api/production has everything: every histogram, every state's last finish, a deployment,
//     deployments awaiting approval, both SLO objectives (listed success first, exposed sorted);
//   - api/staging fails, runs two deployments, has only a failed duration and no objective;
//   - frontend/web/production has two pipelines, a canceled deployment, a label value needing
//     escapes and a commit with invalid UTF-8; its commit sorts before api's, so the info
//     family is not in component order;
//   - worker/production has never deployed: only the always-present series, with zeros;
//   - docs has no pipeline and so no environment and no series.
func fixture() *snapshot.Snapshot {
	return &snapshot.Snapshot{
		Taken:  base,
		Polled: true,
		Components: []snapshot.Component{
			{
				Label: "api", Ref: "component:default/api", Owner: "group:default/payments",
				Pipelines: []string{"acme/api-deploy-prod", "acme/api-deploy-staging"},
				Environments: []snapshot.Environment{
					{
						Name: "production",
						Deployments: []snapshot.PipelineDeployments{{Pipeline: "acme/api-deploy-prod", Total: [3]uint64{3, 1, 2}, Created: at(-30),
							Last: [3]snapshot.LastBuild{{Number: 44, FinishedAt: at(100)}, {Number: 42, FinishedAt: at(50)}, {Number: 43, FinishedAt: at(75)}}}},
						Duration: [3]*snapshot.Histogram{
							withExemplars(hist(durationBounds, 240, 3300, 500), at(-30),
								ex(240, 100, "acme/api-deploy-prod/builds/44", "dddddddddddd"),
								ex(3300, 20, "acme/api-deploy-prod/builds/41", "cccccccccccc"),
								ex(500, -30, "acme/api-deploy-prod/builds/40", "")),
							hist(durationBounds, 1200),
						},
						LeadTime:      withExemplars(hist(leadBounds, 14160, 700000), at(20), ex(14160, 100, "acme/api-deploy-prod/builds/44", "dddddddddddd")),
						Recovery:      hist(leadBounds, 6600),
						ApprovalWait:  withExemplars(hist(approvalBounds, 2400, 30, 90000), at(-30), ex(90000, 100, "acme/api-deploy-prod/builds/44", "dddddddddddd")),
						LastFinished:  [3]time.Time{at(100), at(50), at(75)},
						Deployed:      &snapshot.Deployed{Version: "v2.3.0", Commit: "dddddddddddddddddddddddddddddddddddddddd", FinishedAt: at(100)},
						Awaiting:      2,
						AwaitingSince: at(90),
						Objectives:    []snapshot.Objective{{SLO: "success", Ratio: 0.95}, {SLO: "duration", Ratio: 0.9}},
					},
					{
						Name: "staging",
						Deployments: []snapshot.PipelineDeployments{{Pipeline: "acme/api-deploy-staging", Total: [3]uint64{1, 1, 0},
							Last: [3]snapshot.LastBuild{{Number: 7, FinishedAt: at(10)}, {Number: 8, FinishedAt: at(20)}}}},
						Duration:     [3]*snapshot.Histogram{nil, hist(durationBounds, 1800)},
						LastFinished: [3]time.Time{at(10), at(20), {}},
						Failing:      true,
						Deployed:     &snapshot.Deployed{Version: "v2.3.0", Commit: "dddddddddddddddddddddddddddddddddddddddd", FinishedAt: at(10)},
						Running:      2,
						RunningSince: at(110),
					},
				},
			},
			{Label: "docs", Ref: "component:default/docs"},
			{
				Label: "frontend/web", Ref: "component:frontend/web",
				Pipelines: []string{"acme/web-release", "acme/web-hotfix"},
				Environments: []snapshot.Environment{{
					Name: "production",
					Deployments: []snapshot.PipelineDeployments{
						{Pipeline: "acme/web-hotfix", Total: [3]uint64{0, 0, 1}},
						{Pipeline: "acme/web-release", Total: [3]uint64{1, 0, 0}, Last: [3]snapshot.LastBuild{{Number: 42, FinishedAt: at(30)}}},
					},
					Duration:     [3]*snapshot.Histogram{hist(durationBounds, 420)},
					LeadTime:     hist(leadBounds, 480),
					LastFinished: [3]time.Time{at(30), {}, at(40)},
					Deployed:     &snapshot.Deployed{Version: "3.0.0 \"rc\\1\"\nbuild", Commit: "aaaa\xffaaaa", FinishedAt: at(30)},
					Objectives:   []snapshot.Objective{{SLO: "success", Ratio: 0.99}},
				}},
			},
			{
				Label: "worker", Ref: "component:default/worker",
				Pipelines: []string{"acme/worker"},
				Environments: []snapshot.Environment{{
					Name:        "production",
					Deployments: []snapshot.PipelineDeployments{{Pipeline: "acme/worker"}},
				}},
			},
		},
		UnknownEnvironments: []string{"qa"},
		ExemplarsDropped:    [2]uint64{2, 1},
	}
}

// synthetic is components × 3 environments where, with worst, every per-environment series
// exists (the benchmarks' worst case: 55 series per production environment, 53 elsewhere: the 52
// and 50 the old collector/bench_test.go counted, plus the three of buildkite_deployment_last_build_number); without, only what a quiet catalog has.
func synthetic(components int, worst bool) *snapshot.Snapshot {
	s := &snapshot.Snapshot{Taken: base, Polled: true, Components: make([]snapshot.Component, components)}
	envs := []string{"development", "production", "staging"}
	for i := range components {
		name := fmt.Sprintf("component-%05d", i)
		p := "acme/" + name + "-deploy"
		c := snapshot.Component{Label: name, Ref: "component:default/" + name, Pipelines: []string{p}}
		for j, env := range envs {
			e := snapshot.Environment{
				Name:         env,
				Deployments:  []snapshot.PipelineDeployments{{Pipeline: p, Total: [3]uint64{uint64(i + 2), uint64(j), 1}}},
				Duration:     [3]*snapshot.Histogram{hist(durationBounds, 400, 700), hist(durationBounds, 100)},
				LeadTime:     hist(leadBounds, 3600),
				Recovery:     hist(leadBounds, 7200),
				LastFinished: [3]time.Time{at(i*100 + j*10 + 3), at(i*100 + j*10), at(i*100 + j*10 + 2)},
				Failing:      i%7 == 0,
				Deployed:     &snapshot.Deployed{Version: fmt.Sprintf("1.%d.3", i), Commit: fmt.Sprintf("%040x", i*7919), FinishedAt: at(i*100 + j*10 + 3)},
			}
			if worst {
				e.Deployments[0].Last = [3]snapshot.LastBuild{{Number: 3 * i}, {Number: 3*i + 1}, {Number: 3*i + 2}}
				e.ApprovalWait = hist(approvalBounds, 120)
				e.Running, e.RunningSince = 1, at(i)
				e.Awaiting, e.AwaitingSince = 1, at(i)
			}
			if env == "production" {
				e.Objectives = []snapshot.Objective{{SLO: "success", Ratio: 0.95}, {SLO: "duration", Ratio: 0.9}}
			}
			c.Environments = append(c.Environments, e)
		}
		s.Components[i] = c
	}
	return s
}
