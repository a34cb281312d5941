package collector

import (
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// deploymentSeries keeps the deployment series of a scrape: exporter health (poll times,
// durations) differs between two exporters by design.
func deploymentSeries(got map[string]float64) map[string]float64 {
	out := map[string]float64{}
	for k, v := range got {
		if strings.HasPrefix(k, "buildkite_deployment") {
			out[k] = v
		}
	}
	return out
}

// TestReplicasAgreeOnRetriedDeployments: two exporters of one organization, the second started
// after everything happened, export identical deployment series. Build 1 fails, is retried once
// finished (a terminal failure, then a pass: one failure and one recovery for both exporters);
// build 2 has a job retried while another still runs (never a terminal failure: one pass);
// build 3 fails and stays failed. The first exporter sees each step live; the second recovers
// the failure of build 1 from its retried job.
func TestReplicasAgreeOnRetriedDeployments(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		comps := []backstage.Component{component("shop", "shop-deploy")}
		md := map[string]string{"environment": "production"}
		now := time.Now()
		newBuild := func(jobs ...string) int {
			b := buildkite.Build{State: buildkite.StateRunning, Commit: sha(int(now.Unix())), Branch: "main", MetaData: md,
				CreatedAt: ts(now), ScheduledAt: ts(now), StartedAt: ts(now)}
			for _, name := range jobs {
				b.Jobs = append(b.Jobs, buildkite.Job{Type: buildkite.JobTypeScript, Name: name, State: buildkite.StateRunning,
					CreatedAt: ts(now), ScheduledAt: ts(now), RunnableAt: ts(now), StartedAt: ts(now)})
			}
			return f.AddBuild(testOrg, "shop-deploy", b).Number
		}
		jobIDs := func(n int) []string {
			b, _ := f.Build(testOrg, "shop-deploy", n)
			var ids []string
			for _, j := range b.Jobs {
				ids = append(ids, j.ID)
			}
			return ids
		}
		must := func(err error) {
			t.Helper()
			if err != nil {
				t.Fatal(err)
			}
		}

		first := start(t, f, comps)
		// Build 1: its only job fails, the build finishes failed; the first exporter sees it.
		b1 := newBuild("deploy")
		first.next()
		must(f.FinishJob(testOrg, "shop-deploy", b1, jobIDs(b1)[0], buildkite.StateFailed, now, time.Now()))
		must(f.FinishBuild(testOrg, "shop-deploy", b1, buildkite.StateFailed, time.Now().Add(2*time.Second)))
		first.next()
		// Retried once finished; the retry passes.
		must(f.RetryBuild(testOrg, "shop-deploy", b1))
		first.next()
		retryID := jobIDs(b1)[1]
		must(f.FinishJob(testOrg, "shop-deploy", b1, retryID, buildkite.StatePassed, time.Now().Add(-20*time.Second), time.Now()))
		must(f.FinishBuild(testOrg, "shop-deploy", b1, buildkite.StatePassed, time.Now().Add(time.Second)))
		first.next()

		// Build 2: "tests" fails while "deploy" still runs, is retried at once and passes.
		b2 := newBuild("tests", "deploy")
		first.next()
		ids := jobIDs(b2)
		must(f.FinishJob(testOrg, "shop-deploy", b2, ids[0], buildkite.StateFailed, now, time.Now()))
		first.next()
		must(f.RetryJob(testOrg, "shop-deploy", b2, ids[0], buildkite.RetryTypeManual))
		first.next()
		must(f.FinishJob(testOrg, "shop-deploy", b2, jobIDs(b2)[2], buildkite.StatePassed, time.Now().Add(-10*time.Second), time.Now()))
		must(f.FinishJob(testOrg, "shop-deploy", b2, ids[1], buildkite.StatePassed, now, time.Now()))
		must(f.FinishBuild(testOrg, "shop-deploy", b2, buildkite.StatePassed, time.Now().Add(time.Second)))
		first.next()

		// Build 3: fails and stays failed.
		b3 := newBuild("deploy")
		first.next()
		must(f.FinishJob(testOrg, "shop-deploy", b3, jobIDs(b3)[0], buildkite.StateFailed, now, time.Now()))
		must(f.FinishBuild(testOrg, "shop-deploy", b3, buildkite.StateFailed, time.Now().Add(time.Second)))
		first.next()

		second := start(t, f, comps)
		a, b := deploymentSeries(first.metrics()), deploymentSeries(second.metrics())
		expect(t, a, map[string]float64{
			deployments("shop", "production", "shop-deploy", "passed"):                                              2,
			deployments("shop", "production", "shop-deploy", "failed"):                                              2,
			series("buildkite_deployment_recovery_seconds_count", "component", "shop", "environment", "production"): 1,
			series("buildkite_deployment_failing", "component", "shop", "environment", "production"):                1,
		})
		if diff := cmp.Diff(a, b); diff != "" {
			t.Errorf("the exporter started later disagrees (-first +second):\n%s", diff)
		}
		// Both stored the same keys.
		keys := func(h *harness) []string {
			var out []string
			if err := h.log.Replay(func(r store.Record) error { out = append(out, r.Key); return nil }); err != nil {
				t.Fatal(err)
			}
			slices.Sort(out)
			return out
		}
		if diff := cmp.Diff(keys(first), keys(second)); diff != "" {
			t.Errorf("record keys differ (-first +second):\n%s", diff)
		}
	})
}
