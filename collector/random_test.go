package collector

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// randomPipelines: slug → component ("" for pipelines no component names) and the environment the
// slug implies when the meta-data names none (written out here, not derived with the classifier).
var randomPipelines = []struct{ slug, component, slugEnv string }{
	{"shop-deploy-prod", "shop", "production"},
	{"shop-deploy-staging", "shop", "staging"},
	{"api", "api", "production"},
	{"web-release", "web", "production"},
	{"worker-dev-deploy", "worker", "development"},
	{"billing", "billing", "production"},
	{"search-live", "search", "production"},
	{"auth", "auth", "production"},
	{"sandbox", "", ""},
	{"experiments-prod", "", ""},
}

// randomEnvs are meta-data choices and the environments they must count under.
var randomEnvs = []struct {
	md   map[string]string
	envs []string // nil: the slug's
}{
	{nil, nil},
	{map[string]string{"environment": "production"}, []string{"production"}},
	{map[string]string{"environment": "prod"}, []string{"production"}},
	{map[string]string{"environment": "Live"}, []string{"production"}},
	{map[string]string{"environment": "stg"}, []string{"staging"}},
	{map[string]string{"environment": "develop"}, []string{"development"}},
	{map[string]string{"x:prd:deployed": "true", "x:stage:deployed": "true", "y:prod:deployed": "1"}, []string{"production", "staging"}},
	{map[string]string{"x:dev:deployed": "false"}, nil},
}

var randomStates = []string{"passed", "passed", "passed", "failed", "canceled", "skipped", "not_run"}

type randomModel struct {
	f      *buildkitetest.Fake
	rng    *rand.Rand
	counts map[string]float64 // expected series → value
	// builds that finished and may be retried later: pipeline index, number.
	done     []struct{ p, n int }
	running  []struct{ p, n int }
	mdOf     map[string]int // org/pipeline#number → randomEnvs index
	outcomes int
}

func (m *randomModel) expectOutcome(p int, b buildkite.Build, mdIdx int) {
	pl := randomPipelines[p]
	if pl.component == "" || (b.State != "passed" && b.State != "failed" && b.State != "canceled") {
		return
	}
	envs := randomEnvs[mdIdx].envs
	if envs == nil {
		envs = []string{pl.slugEnv}
	}
	for _, env := range envs {
		m.outcomes++
		m.counts[deployments(pl.component, env, pl.slug, b.State)]++
		if b.State != "canceled" {
			m.counts[series("buildkite_deployment_duration_seconds_count", "component", pl.component, "environment", env, "state", b.State)]++
		}
		if b.State == "passed" {
			m.counts[series("buildkite_deployment_lead_time_seconds_count", "component", pl.component, "environment", env)]++
		}
	}
}

// add creates a build at created; finished builds finish within an hour of created.
func (m *randomModel) add(created time.Time, finish bool) {
	p := m.rng.IntN(len(randomPipelines))
	mdIdx := m.rng.IntN(len(randomEnvs))
	b := buildkite.Build{
		Commit: fmt.Sprintf("%040x", m.rng.Uint64()), MetaData: randomEnvs[mdIdx].md,
		CreatedAt: ts(created), StartedAt: ts(created.Add(time.Duration(m.rng.IntN(5)) * time.Second)),
	}
	// One job, as every build that runs has: a retry retries a job, and the job's record is the
	// evidence of each attempt.
	job := buildkite.Job{Type: buildkite.JobTypeScript, Name: "deploy", State: "running",
		CreatedAt: b.CreatedAt, ScheduledAt: b.CreatedAt, RunnableAt: b.CreatedAt, StartedAt: b.StartedAt}
	if finish {
		b.State = randomStates[m.rng.IntN(len(randomStates))]
		b.FinishedAt = ts(b.StartedAt.Add(time.Duration(1+m.rng.IntN(3600)) * time.Second))
		if now := time.Now(); b.FinishedAt.After(now) {
			b.FinishedAt = ts(now) // nothing finishes in the future; a retry must come after the finish
		}
		job.State, job.FinishedAt = jobState(b.State), b.FinishedAt
	} else {
		b.State = "running"
	}
	b.Jobs = []buildkite.Job{job}
	b = m.f.AddBuild(testOrg, randomPipelines[p].slug, b)
	m.mdOf[fmt.Sprint(p, "#", b.Number)] = mdIdx
	if finish {
		m.expectOutcome(p, b, mdIdx)
		m.done = append(m.done, struct{ p, n int }{p, b.Number})
	} else {
		m.running = append(m.running, struct{ p, n int }{p, b.Number})
	}
}

// finishRunning finishes every running build at now.
func (m *randomModel) finishRunning(now time.Time) {
	for _, r := range m.running {
		state := randomStates[m.rng.IntN(len(randomStates))]
		open, _ := m.f.Build(testOrg, randomPipelines[r.p].slug, r.n)
		last := open.Jobs[len(open.Jobs)-1] // the running attempt: the original, or the latest retry
		if err := m.f.FinishJob(testOrg, randomPipelines[r.p].slug, r.n, last.ID, jobState(state), last.CreatedAt.Time, now); err != nil {
			panic(err)
		}
		if err := m.f.FinishBuild(testOrg, randomPipelines[r.p].slug, r.n, state, now); err != nil {
			panic(err)
		}
		b, _ := m.f.Build(testOrg, randomPipelines[r.p].slug, r.n)
		m.expectOutcome(r.p, b, m.mdOf[fmt.Sprint(r.p, "#", r.n)])
		m.done = append(m.done, r)
	}
	m.running = nil
}

// jobState is the state of the job that made a build end in state.
func jobState(state string) string {
	switch state {
	case "skipped":
		return "skipped"
	case "not_run":
		return "broken"
	}
	return state
}

// retry re-opens a finished build; it finishes with the other running builds.
func (m *randomModel) retry() {
	if len(m.done) == 0 {
		return
	}
	i := m.rng.IntN(len(m.done))
	d := m.done[i]
	m.done = append(m.done[:i], m.done[i+1:]...)
	if err := m.f.RetryBuild(testOrg, randomPipelines[d.p].slug, d.n); err != nil {
		panic(err)
	}
	m.running = append(m.running, d)
}

// TestRandomHistoryCountsEveryOutcomeOnce generates a few thousand builds (a backfilled history,
// then new, running, finishing and retried builds over many poll cycles, with deep pages refused
// early) and checks every counter and histogram count against a direct count of the data.
func TestRandomHistoryCountsEveryOutcomeOnce(t *testing.T) {
	for _, seed := range []uint64{1, 2} {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := buildkitetest.New(buildkitetest.WithDeepPageLimit(4), buildkitetest.WithRateLimits(false))
				f.SetToken(testToken, "read_builds")
				m := &randomModel{f: f, rng: rand.New(rand.NewPCG(seed, 99)), counts: map[string]float64{}, mdOf: map[string]int{}}
				now := time.Now()
				for range 2500 {
					m.add(now.Add(-time.Duration(1+m.rng.IntN(20*24*3600))*time.Second), true)
				}
				comps := map[string]*backstage.Component{}
				var catalog []backstage.Component
				for _, p := range randomPipelines {
					if p.component == "" {
						continue
					}
					if comps[p.component] == nil {
						c := component(p.component)
						comps[p.component] = &c
					}
					comps[p.component].Pipelines = append(comps[p.component].Pipelines, backstage.PipelineRef{Org: testOrg, Pipeline: p.slug})
				}
				for _, name := range sortedKeys(comps) {
					catalog = append(catalog, *comps[name])
				}
				mem := store.NewMemory()
				h := start(t, f, catalog, withLog(mem))
				for cycle := range 30 {
					// Retry builds whose outcome a poll has seen, then finish every open build:
					// a retried build finishes again with a new finished_at.
					for range 5 {
						m.retry()
					}
					m.finishRunning(time.Now().Add(-time.Second))
					for range 40 {
						m.add(time.Now().Add(-time.Duration(10+m.rng.IntN(20))*time.Second), m.rng.IntN(3) > 0)
					}
					if cycle%7 == 6 {
						// A restart in the middle: counters must come back from the log.
						h.stop()
						h = start(t, f, catalog, withLog(mem))
						continue
					}
					h.next()
				}
				m.finishRunning(time.Now().Add(-time.Second))
				h.next()
				h.next()

				got := h.metrics()
				for k, v := range m.counts {
					if got[k] != v {
						t.Errorf("%s = %v, want %v", k, got[k], v)
					}
				}
				// Nothing counted that the data does not have.
				for _, prefix := range []string{"buildkite_deployments_total", "buildkite_deployment_duration_seconds_count", "buildkite_deployment_lead_time_seconds_count"} {
					for k, v := range filter(got, prefix) {
						if v != m.counts[k] {
							t.Errorf("%s = %v, want %v", k, v, m.counts[k])
						}
					}
				}
				keys := map[string]int{}
				if err := mem.Replay(func(r store.Record) error { keys[r.Key]++; return nil }); err != nil {
					t.Fatal(err)
				}
				if len(keys) != m.outcomes {
					t.Errorf("log holds %d records, the data has %d deployment outcomes", len(keys), m.outcomes)
				}
				dups := map[string]int{}
				for k, n := range keys {
					if n > 1 {
						dups[k] = n
					}
				}
				if diff := cmp.Diff(map[string]int{}, dups); diff != "" {
					t.Errorf("records stored more than once:\n%s", diff)
				}
				if m.outcomes < 2000 {
					t.Errorf("only %d outcomes generated; the test is meant to cover thousands", m.outcomes)
				}
			})
		})
	}
}
