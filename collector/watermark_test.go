package collector

import (
	"fmt"
	"math"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

// TestAPIEconomyFirstBackfillProbes: an organization whose builds mostly belong to pipelines no
// component names (50 of them, 19,833 builds in 30 days, against 1,167 of 6 annotated pipelines).
// The first backfill reads one org-wide page, sees that listing org-wide would cost ~210 pages,
// lists the annotated pipelines instead, and costs within 1.2× the pages the data needs.
func TestAPIEconomyFirstBackfillProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New(buildkitetest.WithRateLimits(false))
		f.SetToken(testToken, "read_builds")
		now := time.Now()
		annotated := []string{"svc-a", "svc-b", "svc-c", "svc-d", "svc-e", "svc-f"}
		byPipe := map[string][]buildkite.Build{}
		want := map[string]int{}
		total := 0
		for i := range 21000 {
			p := fmt.Sprintf("ci-%02d", i%50)
			if i%18 == 0 {
				p = annotated[(i/18)%len(annotated)]
				want[p]++
				total++
			}
			byPipe[p] = append(byPipe[p], finished(now.Add(-time.Hour-time.Duration(i)*2*time.Minute), 5*time.Minute, "passed", nil))
		}
		for p, bs := range byPipe {
			f.AddBuilds(testOrg, p, bs)
		}
		var comps []backstage.Component
		for _, p := range annotated {
			comps = append(comps, component(p, p))
		}
		h := start(t, f, comps)
		got := routes(f)
		dataPages := int(math.Ceil(float64(total)/perPage)) + 1 // + 1 page of open builds
		n := len(f.Requests())
		t.Logf("first backfill: %d requests %v; the data needs %d pages (%.2f×)", n, got, dataPages, float64(n)/float64(dataPages))
		if got[buildkitetest.RoutePipelineBuilds] == 0 {
			t.Errorf("the backfill did not list per pipeline: %v", got)
		}
		if float64(n) > 1.2*float64(dataPages) {
			t.Errorf("the backfill cost %d requests, more than 1.2 × the %d pages its data needs", n, dataPages)
		}
		m := h.metrics()
		for _, p := range annotated {
			expect(t, m, map[string]float64{deployments(p, "production", p, "passed"): float64(want[p])})
		}
	})
}

// TestAPIEconomyProbePageReused: when the probe shows the org-wide listing to be the cheaper, its
// page is the listing's first: the listing continues below it and costs its pages, not one more.
func TestAPIEconomyProbePageReused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New(buildkitetest.WithRateLimits(false))
		f.SetToken(testToken, "read_builds")
		now := time.Now()
		for i := range 240 {
			p := []string{"a", "b", "c"}[i%3]
			f.AddBuild(testOrg, p, finished(now.Add(-time.Hour-time.Duration(i)*170*time.Minute), time.Minute, "passed", nil))
		}
		h := start(t, f, []backstage.Component{component("a", "a"), component("b", "b"), component("c", "c")})
		got := routes(f)
		t.Logf("first backfill: %v", got)
		// 3 pages of finished builds (the first of them the probe) + 1 of open builds.
		if got[buildkitetest.RouteOrgBuilds] != 4 || len(got) != 1 {
			t.Errorf("backfill of 240 builds of 3 pipelines cost %v, want 4 org-wide requests", got)
		}
		expect(t, h.metrics(), map[string]float64{
			deployments("a", "production", "a", "passed"): 80,
			deployments("b", "production", "b", "passed"): 80,
			deployments("c", "production", "c", "passed"): 80,
		})
	})
}

// TestWatermarkFollowsBuildkiteClock: with the exporter's clock an hour ahead of Buildkite's (a
// 10-minute overlap on the local clock would skip every new build) or an hour behind, each cycle
// counts the builds that finished since the previous one. Ahead, where the watermark follows the
// newest finished_at read, each listing starts the overlap before that finish; a cycle that reads
// nothing new leaves it where it was.
func TestWatermarkFollowsBuildkiteClock(t *testing.T) {
	for _, skew := range []time.Duration{time.Hour, -time.Hour} { // exporter's clock − Buildkite's
		t.Run(fmt.Sprint("skew=", skew), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				bk := func() time.Time { return time.Now().Add(-skew) }
				f := buildkitetest.New(buildkitetest.WithClock(bk))
				f.SetToken(testToken, "read_builds")
				first := f.AddBuild(testOrg, "shop", finished(bk().Add(-time.Hour), time.Minute, "passed", nil))
				f.AddBuild(testOrg, "api", finished(bk().Add(-2*time.Hour), time.Minute, "passed", nil))
				comps := []backstage.Component{component("shop", "shop"), component("api", "api")}
				h := start(t, f, comps)
				newest := first.FinishedAt.Time
				finishedFrom := func() time.Time {
					t.Helper()
					for _, r := range f.Requests() {
						if r.Query.Has("finished_from") {
							v, err := time.Parse(time.RFC3339, r.Query.Get("finished_from"))
							if err != nil {
								t.Fatal(err)
							}
							return v
						}
					}
					t.Fatal("no finished-builds listing")
					return time.Time{}
				}
				for i := range 6 {
					quiet := i == 3
					var b buildkite.Build
					if !quiet {
						// Finishes 10 s into the next interval, on Buildkite's clock.
						b = f.AddBuild(testOrg, "shop", finished(bk().Add(-time.Minute), 70*time.Second, "passed", nil))
					}
					f.ResetRequests()
					h.next()
					from := finishedFrom()
					t.Logf("cycle %d: finished_from %s on Buildkite's clock (now %s)", i, from.Format(time.TimeOnly), bk().Format(time.TimeOnly))
					if skew > 0 && !from.Equal(newest.Add(-overlap)) {
						t.Errorf("cycle %d listed finished builds from %s, want the newest finish read before (%s) − overlap",
							i, from.Format(time.RFC3339), newest.Format(time.RFC3339))
					}
					if !quiet {
						newest = b.FinishedAt.Time
					}
				}
				expect(t, h.metrics(), map[string]float64{
					deployments("shop", "production", "shop", "passed"): 6,
					deployments("api", "production", "api", "passed"):   1,
				})
			})
		})
	}
}
