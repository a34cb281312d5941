package collector

import (
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/fixture"
)

func routes(f *buildkitetest.Fake) map[string]int {
	out := map[string]int{}
	for _, r := range f.Requests() {
		out[r.Route]++
	}
	return out
}

// TestAPIEconomyFixture: the backfill of the fixture costs the pages its data needs (it has fewer
// than 100 builds: one page per query kind) and a steady-state cycle with nothing new costs one
// request per kind of query.
func TestAPIEconomyFixture(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New()
		comps := fixture.Populate(f, time.Now())
		f.SetToken(testToken, "read_builds")
		h := start(t, f, comps)
		backfill := routes(f)
		t.Logf("backfill requests by route: %v", backfill)
		if backfill[buildkitetest.RouteOrgBuilds] != 2 || len(f.Requests()) != 2 {
			t.Errorf("backfill cost %d requests %v, want 2 org-wide pages (finished, open)", len(f.Requests()), backfill)
		}
		for range 3 {
			f.ResetRequests()
			h.next()
			steady := routes(f)
			if len(f.Requests()) > 2 || steady[buildkitetest.RouteOrgBuilds] != 2 {
				t.Errorf("steady-state cycle cost %v, want one org-wide request per query kind", steady)
			}
		}
		t.Logf("steady-state requests by route: %v", routes(f))
	})
}

// TestAPIEconomySinglePipeline: with one annotated pipeline, per-pipeline listing is never more
// expensive and carries no unrelated builds.
func TestAPIEconomySinglePipeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		now := time.Now()
		for i := range 150 {
			f.AddBuild(testOrg, "shop", finished(now.Add(-time.Duration(i+1)*time.Hour), time.Minute, "passed", nil))
		}
		f.AddBuild(testOrg, "other", finished(now.Add(-time.Hour), time.Minute, "passed", nil))
		h := start(t, f, []backstage.Component{component("shop", "shop")})
		if got := routes(f); got[buildkitetest.RoutePipelineBuilds] != 3 || len(got) != 1 {
			t.Errorf("backfill of 150 builds of one pipeline cost %v, want 2 pages of finished builds + 1 of open builds", got)
		}
		f.ResetRequests()
		h.next()
		if got := routes(f); got[buildkitetest.RoutePipelineBuilds] != 2 || len(got) != 1 {
			t.Errorf("steady-state cycle cost %v, want one request per query kind", got)
		}
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop", "passed"): 150})
	})
}

// TestAPIEconomySwitchesToPipelines: a busy pipeline no component names makes the org-wide listing
// expensive; once a cycle has measured that, finished builds are listed per pipeline while the
// (cheap) open-builds query stays org-wide.
func TestAPIEconomySwitchesToPipelines(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		now := time.Now()
		for _, p := range []string{"a", "b", "c"} {
			f.AddBuild(testOrg, p, finished(now.Add(-time.Hour), time.Minute, "passed", nil))
		}
		h := start(t, f, []backstage.Component{component("a", "a"), component("b", "b"), component("c", "c")})
		// 1,000 builds of an unannotated pipeline finish during the next interval.
		busy := make([]buildkite.Build, 1000)
		for i := range busy {
			busy[i] = finished(time.Now().Add(time.Duration(i)*20*time.Millisecond), time.Second, "passed", nil)
			busy[i].Number = i + 1
		}
		f.AddBuilds(testOrg, "ci", busy)
		f.ResetRequests()
		h.next() // measured: ~10 pages org-wide
		measured := routes(f)
		f.ResetRequests()
		h.next()
		got := routes(f)
		t.Logf("cycle that measured: %v; next cycle: %v", measured, got)
		if measured[buildkitetest.RouteOrgBuilds] < 10 {
			t.Fatalf("the busy pipeline did not make the org-wide listing expensive: %v", measured)
		}
		if got[buildkitetest.RoutePipelineBuilds] != 3 || got[buildkitetest.RouteOrgBuilds] != 1 {
			t.Errorf("after measuring, cycle cost %v, want 3 per-pipeline requests (finished) and 1 org-wide (open)", got)
		}
		expect(t, h.metrics(), map[string]float64{deployments("a", "production", "a", "passed"): 1})
	})
}

// TestDeepListingIsSliced: with the API refusing pages past the second, 450 open builds (many
// created in the same second, so slices overlap) are read in shallow time slices, each counted once.
func TestDeepListingIsSliced(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New(buildkitetest.WithDeepPageLimit(2))
		f.SetToken(testToken, "read_builds")
		now := time.Now()
		open := make([]buildkite.Build, 450)
		for i := range open {
			created := now.Add(-time.Duration(i/30) * time.Second) // 30 builds per second
			open[i] = buildkite.Build{Number: i + 1, State: "running", Commit: sha(i), CreatedAt: ts(created), StartedAt: ts(created)}
		}
		f.AddBuilds(testOrg, "shop", open)
		h := start(t, f, []backstage.Component{component("shop", "shop")})
		expect(t, h.metrics(), map[string]float64{
			series("buildkite_deployments_running", "component", "shop", "environment", "production"): 450,
			series("buildkite_up"): 1,
		})
		deep, sliced := 0, 0
		for _, r := range f.Requests() {
			if r.Status == 400 {
				deep++
			}
			if r.Query.Get("created_to") != "" {
				sliced++
			}
		}
		t.Logf("%d requests, %d refused as too deep, %d with created_to", len(f.Requests()), deep, sliced)
		if sliced == 0 {
			t.Error("the listing was never narrowed by created_to")
		}
		if deep > 1 {
			t.Errorf("%d requests refused as too deep; after the first, slices should stop short of the limit", deep)
		}
	})
}
