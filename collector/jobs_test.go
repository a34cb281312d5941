package collector

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// TestJobsFetchedOncePerFinish: a failed build's jobs are read once, though the 2-minute
// overlap lists it again in the next cycles; a retry that gives it a new finish reads them again.
func TestJobsFetchedOncePerFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		h := start(t, f, []backstage.Component{component("shop", "shop")})
		time.Sleep(testInterval - 5*time.Second)
		failed := finished(time.Now().Add(-2*time.Minute), time.Minute, "failed", map[string]string{"environment": "production"})
		failed.Jobs = []buildkite.Job{{Type: buildkite.JobTypeScript, Name: "deploy", State: "failed",
			CreatedAt: failed.CreatedAt, RunnableAt: failed.CreatedAt, StartedAt: failed.StartedAt, FinishedAt: failed.FinishedAt}}
		b := f.AddBuild(testOrg, "shop", failed)
		gets := func() int {
			n := 0
			for _, r := range f.Requests() {
				if strings.HasSuffix(r.Path, "/pipelines/shop/builds/1") {
					n++
				}
			}
			return n
		}
		for range 6 { // the build stays within the overlap for 4 of them
			h.next()
		}
		if n := gets(); n != 1 {
			t.Errorf("Get-a-build of the failed build: %d requests over 6 cycles, want 1", n)
		}
		if err := f.RetryBuild(testOrg, "shop", b.Number); err != nil {
			t.Fatal(err)
		}
		now, _ := f.Build(testOrg, "shop", b.Number)
		last := now.Jobs[len(now.Jobs)-1]
		if err := f.FinishJob(testOrg, "shop", b.Number, last.ID, "failed", time.Now(), time.Now()); err != nil {
			t.Fatal(err)
		}
		if err := f.FinishBuild(testOrg, "shop", b.Number, "failed", time.Now()); err != nil {
			t.Fatal(err)
		}
		h.next()
		h.next()
		if n := gets(); n != 2 {
			t.Errorf("after a retry and a new failure: %d requests, want 2", n)
		}
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop", "failed"): 2})
	})
}
