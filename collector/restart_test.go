package collector

import (
	"context"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// blockedBuild adds a build waiting on its release approval since gate.
func blockedBuild(f *buildkitetest.Fake, pipeline string, created, gate time.Time) int {
	b := buildkite.Build{State: buildkite.StatePassed, Blocked: true, Commit: sha(7), Branch: "main",
		MetaData: map[string]string{"environment": "production"}, CreatedAt: ts(created), StartedAt: ts(created), FinishedAt: ts(gate),
		Jobs: []buildkite.Job{
			{Type: buildkite.JobTypeScript, Name: "build", State: "passed", CreatedAt: ts(created), RunnableAt: ts(created), StartedAt: ts(created), FinishedAt: ts(gate)},
			{Type: buildkite.JobTypeManual, Label: "Release?", State: "blocked", CreatedAt: ts(created), RunnableAt: ts(gate)},
		}}
	return f.AddBuild(testOrg, pipeline, b).Number
}

// TestApprovalWaitSurvivesARestart: a build waits at its block step when the exporter stops
// (its memory of having seen it blocked is gone), is approved and finishes while it is down; the
// exporter's first cycle after the restart reads the finished builds with their jobs, so the
// approval wait is observed as an uninterrupted run would.
func TestApprovalWaitSurvivesARestart(t *testing.T) {
	for _, during := range []string{"steady state", "backfill"} {
		t.Run(during, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake()
				comps := []backstage.Component{component("shop", "shop")}
				mem := store.NewMemory()
				now := time.Now()
				n := blockedBuild(f, "shop", now.Add(-time.Hour), now.Add(-40*time.Minute))
				var h *harness
				if during == "steady state" {
					h = start(t, f, comps, withLog(mem))
					h.next()
					expect(t, h.metrics(), map[string]float64{series("buildkite_deployments_awaiting_approval", "component", "shop", "environment", "production"): 1})
					h.stop() // the exporter goes away; the store keeps what it wrote
				} else {
					// Killed during its first backfill: nothing stored but what the store had.
					f.InjectFault(buildkitetest.Fault{Status: 503, Times: 1000})
					h = start(t, f, comps, withLog(mem))
					h.stop()
					f.ClearFaults()
				}
				time.Sleep(10 * time.Minute)
				if err := f.Unblock(testOrg, "shop", n, time.Now()); err != nil {
					t.Fatal(err)
				}
				if err := f.FinishBuild(testOrg, "shop", n, buildkite.StatePassed, time.Now().Add(5*time.Minute)); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Minute)
				h = start(t, f, comps, withLog(mem))
				wantWait := (10*time.Minute + 40*time.Minute).Seconds() + testInterval.Seconds()*float64(map[string]int{"steady state": 1}[during])
				expect(t, h.metrics(), map[string]float64{
					deployments("shop", "production", "shop", "passed"):                                                          1,
					series("buildkite_deployment_approval_wait_seconds_count", "component", "shop", "environment", "production"): 1,
					series("buildkite_deployment_approval_wait_seconds_sum", "component", "shop", "environment", "production"):   wantWait,
					series("buildkite_deployments_awaiting_approval", "component", "shop", "environment", "production"):          0,
				})
			})
		})
	}
}

// stallingClient answers nothing while stall is set, until the caller's context ends: a
// stalled proxy, a body trickling in below every per-request timeout.
type stallingClient struct {
	Client
	stall atomic.Bool
}

func (c *stallingClient) ListBuildsSliced(ctx context.Context, org, pipeline string, opts buildkite.ListBuildsOptions, seen map[string]time.Time, visit func(*buildkite.Build)) error {
	if c.stall.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	return c.Client.ListBuildsSliced(ctx, org, pipeline, opts, seen, visit)
}

// TestCycleDeadline: an API that stalls a steady-state cycle does not hold the organization's
// poll for ever: the cycle ends at its deadline as a failed poll, buildkite_up goes to 0, and
// the next cycle runs.
func TestCycleDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.AddBuild(testOrg, "shop", finished(time.Now().Add(-time.Hour), time.Minute, "passed", map[string]string{"environment": "production"}))
		cl := &stallingClient{Client: newTestClient(t, f)}
		h := start(t, f, []backstage.Component{component("shop", "shop")}, func(o *Options) { o.Client = cl })
		expect(t, h.metrics(), map[string]float64{series("buildkite_up"): 1})
		cl.stall.Store(true)
		time.Sleep(testInterval + minCycleTimeout - time.Second)
		synctestWait()
		expect(t, h.metrics(), map[string]float64{series("buildkite_up"): 1}) // still within the deadline
		time.Sleep(2 * time.Second)
		synctestWait()
		expect(t, h.metrics(), map[string]float64{
			series("buildkite_up"): 0,
			series("buildkite_exporter_poll_errors_total", "organization", testOrg): 1,
			deployments("shop", "production", "shop", "passed"):                     1,
		})
		// The cycle that started as the last one ended stalls to its deadline too; the one after
		// reads normally.
		cl.stall.Store(false)
		time.Sleep(minCycleTimeout + testInterval)
		synctestWait()
		expect(t, h.metrics(), map[string]float64{series("buildkite_up"): 1})
	})
}
