package collector

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
)

// Scenario tests: each builds a history in the fake API, runs the collector in a synctest bubble
// (poll cycles advance fake time) and checks the exported series.

func TestEnvironmentFromMetaDataSlugAndDefault(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		// meta-data wins over a slug that names another environment.
		f.AddBuild(testOrg, "shop-deploy-prod", finished(now.Add(-3*time.Hour), 5*time.Minute, "passed", map[string]string{"environment": "staging"}))
		// slug token, last token first.
		f.AddBuild(testOrg, "shop-deploy-prod", finished(now.Add(-2*time.Hour), 5*time.Minute, "passed", nil))
		f.AddBuild(testOrg, "dev-tools-stg-deploy", finished(now.Add(-2*time.Hour), 5*time.Minute, "passed", nil))
		// neither: the default environment.
		f.AddBuild(testOrg, "api", finished(now.Add(-time.Hour), 5*time.Minute, "passed", nil))
		cfg := config.Default()
		cfg.DefaultEnvironment = "sandbox"
		h := start(t, f, []backstage.Component{component("shop", "shop-deploy-prod"), component("tools", "dev-tools-stg-deploy"), component("api", "api")}, withConfig(cfg))
		expect(t, h.metrics(), map[string]float64{
			deployments("shop", "staging", "shop-deploy-prod", "passed"):          1,
			deployments("shop", "production", "shop-deploy-prod", "passed"):       1,
			deployments("tools", "staging", "dev-tools-stg-deploy", "passed"):     1,
			deployments("tools", "development", "dev-tools-stg-deploy", "passed"): absent,
			deployments("api", "sandbox", "api", "passed"):                        1,
			deployments("api", "sandbox", "api", "failed"):                        0,
			deployments("api", "sandbox", "api", "canceled"):                      0,
		})
	})
}

func TestEnvironmentAliasesAndUnknownNames(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		for i, env := range []string{"live", "PRD", "stg", "develop", "QA", "eu-canary"} {
			f.AddBuild(testOrg, "shop", finished(now.Add(-time.Duration(i+1)*time.Hour), time.Minute, "passed", map[string]string{"environment": env}))
		}
		cfg := config.Default()
		cfg.EnvironmentAliases = map[string]string{"eu-canary": "canary"}
		h := start(t, f, []backstage.Component{component("shop", "shop")}, withConfig(cfg))
		expect(t, h.metrics(), map[string]float64{
			deployments("shop", "production", "shop", "passed"):  2,
			deployments("shop", "staging", "shop", "passed"):     1,
			deployments("shop", "development", "shop", "passed"): 1,
			deployments("shop", "qa", "shop", "passed"):          1,
			deployments("shop", "canary", "shop", "passed"):      1,
			deployments("shop", "QA", "shop", "passed"):          absent,
			// qa is kept, lower-cased, and reported; canary is configured.
			series("buildkite_exporter_unknown_environments"): 1,
		})
	})
}

func TestMultiEnvironmentBuild(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		f.AddBuild(testOrg, "web", finished(now.Add(-time.Hour), 5*time.Minute, "passed", map[string]string{
			"web:staging:deployed": "true", "web:prod:deployed": "true", "docs:production:deployed": "true",
			"web:dev:deployed": "false", "web:prod:version": "2.0", "web:staging:version": "2.0-rc",
		}))
		h := start(t, f, []backstage.Component{component("web", "web")})
		got := h.metrics()
		expect(t, got, map[string]float64{
			deployments("web", "staging", "web", "passed"):     1,
			deployments("web", "production", "web", "passed"):  1, // two apps to production: one deployment there
			deployments("web", "development", "web", "passed"): absent,
			series("buildkite_deployment_duration_seconds_count", "component", "web", "environment", "production", "state", "passed"): 1,
			series("buildkite_deployment_duration_seconds_sum", "component", "web", "environment", "production", "state", "passed"):   300,
		})
		// The first app in key order (docs) has no version for production, so it comes from the tag: none.
		expect(t, filter(got, "buildkite_deployment_info"), map[string]float64{
			series("buildkite_deployment_info", "component", "web", "environment", "staging", "version", "2.0-rc", "commit", sha(int(now.Add(-time.Hour).Unix()))): 1,
		})
		if n := len(filter(got, "buildkite_deployment_info")); n != 2 {
			t.Errorf("got %d info series, want one per environment: %v", n, filter(got, "buildkite_deployment_info"))
		}
	})
}

func TestVersionSources(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		tag := "v9.9.9"
		add := func(pipeline string, md map[string]string, withTag bool) string {
			b := finished(now.Add(-time.Hour), time.Minute, "passed", md)
			if withTag {
				b.Tag = &tag
			}
			f.AddBuild(testOrg, pipeline, b)
			return b.Commit
		}
		commit := add("a", map[string]string{"environment": "production", "version": "1.0", "production:version": "1.1"}, true)
		add("b", map[string]string{"environment": "prod", "version": "2.0"}, true)
		add("c", map[string]string{"environment": "prod"}, true)
		add("d", map[string]string{"app:prod:deployed": "true", "app:prod:version": "4.0", "prod:version": "4.1"}, true)
		add("e", map[string]string{"environment": "prod", "prod:version": "5.0"}, false)
		add("f", nil, false)
		comps := []backstage.Component{component("a", "a"), component("b", "b"), component("c", "c"), component("d", "d"), component("e", "e"), component("f", "f")}
		h := start(t, f, comps)
		info := func(comp, version string) string {
			return series("buildkite_deployment_info", "component", comp, "environment", "production", "version", version, "commit", commit)
		}
		expect(t, h.metrics(), map[string]float64{
			info("a", "1.1"):    1, // <env>:version over version
			info("b", "2.0"):    1, // version over the tag
			info("c", "v9.9.9"): 1, // the tag
			info("d", "4.0"):    1, // <app>:<env>:version first
			info("e", "5.0"):    1, // <env>:version written with the alias
			info("f", ""):       1, // nothing: empty version, the series still says what commit runs
		})
	})
}

func TestStatesCanceledSkippedNotRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		f.AddBuild(testOrg, "shop", finished(now.Add(-5*time.Hour), 10*time.Minute, "failed", nil))
		f.AddBuild(testOrg, "shop", finished(now.Add(-4*time.Hour), 10*time.Minute, "canceled", nil))
		f.AddBuild(testOrg, "shop", finished(now.Add(-3*time.Hour), 0, "skipped", nil))
		f.AddBuild(testOrg, "shop", finished(now.Add(-2*time.Hour), 0, "not_run", nil))
		h := start(t, f, []backstage.Component{component("shop", "shop")})
		canceledAt := now.Add(-4*time.Hour + 11*time.Minute)
		expect(t, h.metrics(), map[string]float64{
			deployments("shop", "production", "shop", "passed"):   0,
			deployments("shop", "production", "shop", "failed"):   1,
			deployments("shop", "production", "shop", "canceled"): 1,
			// canceled after a failure: still failing, and no duration observed for it.
			series("buildkite_deployment_failing", "component", "shop", "environment", "production"):                                              1,
			series("buildkite_deployment_duration_seconds_count", "component", "shop", "environment", "production", "state", "canceled"):          absent,
			series("buildkite_deployment_duration_seconds_count", "component", "shop", "environment", "production", "state", "failed"):            1,
			series("buildkite_deployment_last_finished_timestamp_seconds", "component", "shop", "environment", "production", "state", "canceled"): float64(canceledAt.Unix()),
			series("buildkite_deployment_last_finished_timestamp_seconds", "component", "shop", "environment", "production", "state", "passed"):   absent,
			series("buildkite_deployments_running", "component", "shop", "environment", "production"):                                             0,
		})
	})
}

func TestBlockedBuildAwaitsApprovalThenCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		b := buildkite.Build{
			State: "passed", Blocked: true, Commit: sha(1), MetaData: map[string]string{"environment": "production"},
			CreatedAt: ts(now.Add(-20 * time.Minute)), StartedAt: ts(now.Add(-19 * time.Minute)), FinishedAt: ts(now.Add(-10 * time.Minute)),
			Jobs: []buildkite.Job{
				{Type: "script", State: "passed"},
				{Type: "manual", State: "blocked", RunnableAt: ts(now.Add(-10 * time.Minute))},
			},
		}
		b = f.AddBuild(testOrg, "shop", b)
		// An old blocked build, past awaiting_approval_max_age: not counted as awaiting.
		old := b
		old.Number, old.ID, old.URL, old.WebURL = 0, "", "", ""
		old.CreatedAt, old.StartedAt, old.FinishedAt = ts(now.Add(-10*24*time.Hour)), ts(now.Add(-10*24*time.Hour)), ts(now.Add(-9*24*time.Hour))
		f.AddBuild(testOrg, "shop", old)
		h := start(t, f, []backstage.Component{component("shop", "shop")})
		awaiting := series("buildkite_deployments_awaiting_approval", "component", "shop", "environment", "production")
		since := series("buildkite_deployment_awaiting_approval_since_timestamp_seconds", "component", "shop", "environment", "production")
		expect(t, h.metrics(), map[string]float64{
			awaiting: 1,
			since:    float64(now.Add(-10 * time.Minute).Unix()),
			deployments("shop", "production", "shop", "passed"): 0,
		})

		h.next()
		if err := f.Unblock(testOrg, "shop", b.Number, time.Now()); err != nil {
			t.Fatal(err)
		}
		h.next()
		expect(t, h.metrics(), map[string]float64{
			awaiting: 0, since: absent,
			series("buildkite_deployments_running", "component", "shop", "environment", "production"): 1,
		})
		if err := f.FinishBuild(testOrg, "shop", b.Number, "passed", time.Now().Add(time.Minute)); err != nil {
			t.Fatal(err)
		}
		h.fake.ResetRequests()
		h.next()
		wait := testInterval.Seconds() + 10*60 // unblocked one cycle after the first poll
		expect(t, h.metrics(), map[string]float64{
			awaiting: 0,
			deployments("shop", "production", "shop", "passed"):                                                          1,
			series("buildkite_deployment_approval_wait_seconds_count", "component", "shop", "environment", "production"): 1,
			series("buildkite_deployment_approval_wait_seconds_sum", "component", "shop", "environment", "production"):   wait,
			series("buildkite_deployments_running", "component", "shop", "environment", "production"):                    0,
		})
		gets := 0
		for _, r := range f.Requests() {
			if r.Route == buildkitetest.RouteBuild {
				gets++
			}
		}
		if gets != 1 {
			t.Errorf("the approved build's jobs were fetched %d times, want once", gets)
		}
		// The overlap re-reads the build next cycle: counted once, jobs not fetched again.
		h.next()
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop", "passed"): 1})
		for _, r := range f.Requests() {
			if r.Route == buildkitetest.RouteBuild {
				gets--
			}
		}
		if gets != 0 {
			t.Errorf("jobs fetched again on re-read")
		}
	})
}

func TestFailedBuildRetriedToPassed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		b := f.AddBuild(testOrg, "shop", buildkite.Build{
			State: "failed", Commit: sha(7), CreatedAt: ts(now.Add(-30 * time.Minute)), StartedAt: ts(now.Add(-29 * time.Minute)),
			FinishedAt: ts(now.Add(-20 * time.Minute)), Jobs: []buildkite.Job{{Type: "script", State: "failed"}},
		})
		h := start(t, f, []backstage.Component{component("shop", "shop")})
		failing := series("buildkite_deployment_failing", "component", "shop", "environment", "production")
		running := series("buildkite_deployments_running", "component", "shop", "environment", "production")
		expect(t, h.metrics(), map[string]float64{failing: 1, deployments("shop", "production", "shop", "failed"): 1})

		if err := f.RetryBuild(testOrg, "shop", b.Number); err != nil {
			t.Fatal(err)
		}
		h.next()
		expect(t, h.metrics(), map[string]float64{
			failing: 1, running: 1,
			series("buildkite_deployment_running_since_timestamp_seconds", "component", "shop", "environment", "production"): float64(now.Add(-29 * time.Minute).Unix()),
		})
		passedAt := time.Now().Add(10 * time.Second)
		if err := f.FinishBuild(testOrg, "shop", b.Number, "passed", passedAt); err != nil {
			t.Fatal(err)
		}
		h.next()
		got := h.metrics()
		expect(t, got, map[string]float64{
			failing: 0, running: 0,
			deployments("shop", "production", "shop", "failed"):                                                              1,
			deployments("shop", "production", "shop", "passed"):                                                              1,
			series("buildkite_deployment_recovery_seconds_count", "component", "shop", "environment", "production"):          1,
			series("buildkite_deployment_recovery_seconds_sum", "component", "shop", "environment", "production"):            passedAt.Sub(now.Add(-20 * time.Minute)).Seconds(),
			series("buildkite_deployment_running_since_timestamp_seconds", "component", "shop", "environment", "production"): absent,
			// Lead time: the commit's first build is this one.
			series("buildkite_deployment_lead_time_seconds_sum", "component", "shop", "environment", "production"): passedAt.Sub(now.Add(-30 * time.Minute)).Seconds(),
		})
	})
}

func TestBuildReopenedBetweenTwoPolls(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		b := f.AddBuild(testOrg, "shop", finished(now.Add(-time.Hour), 5*time.Minute, "passed", nil))
		h := start(t, f, []backstage.Component{component("shop", "shop")})
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop", "passed"): 1})
		// Between two polls the build is retried and passes again: a second terminal outcome.
		if err := f.RetryBuild(testOrg, "shop", b.Number); err != nil {
			t.Fatal(err)
		}
		if err := f.FinishBuild(testOrg, "shop", b.Number, "failed", time.Now().Add(5*time.Second)); err != nil {
			t.Fatal(err)
		}
		h.next()
		expect(t, h.metrics(), map[string]float64{
			deployments("shop", "production", "shop", "passed"):                                      1,
			deployments("shop", "production", "shop", "failed"):                                      1,
			series("buildkite_deployment_failing", "component", "shop", "environment", "production"): 1,
		})
		h.next()
		h.next()
		expect(t, h.metrics(), map[string]float64{
			deployments("shop", "production", "shop", "passed"): 1,
			deployments("shop", "production", "shop", "failed"): 1,
		})
	})
}

func TestNullCreator(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		b := finished(now.Add(-time.Hour), time.Minute, "passed", nil)
		b.Creator, b.Author, b.Source = nil, nil, "webhook"
		f.AddBuild(testOrg, "shop", b)
		withUser := finished(now.Add(-2*time.Hour), time.Minute, "passed", nil)
		withUser.Creator = &buildkite.User{ID: "u1", Name: "Dev", Email: "dev@example.com"}
		f.AddBuild(testOrg, "shop", withUser)
		if got, _ := f.Build(testOrg, "shop", 1); got.Creator != nil {
			t.Fatalf("fixture build has a creator: %+v", got.Creator)
		}
		h := start(t, f, []backstage.Component{component("shop", "shop")})
		got := h.metrics()
		expect(t, got, map[string]float64{deployments("shop", "production", "shop", "passed"): 2})
		for k := range got {
			if strings.Contains(k, "dev@example.com") || strings.Contains(k, "Dev") {
				t.Errorf("user data in a series: %s", k)
			}
		}
	})
}

func TestUnannotatedPipelinesIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		f.AddBuild(testOrg, "shop", finished(now.Add(-time.Hour), time.Minute, "passed", nil))
		f.AddBuild(testOrg, "api", finished(now.Add(-time.Hour), time.Minute, "failed", nil))
		for i := range 5 {
			f.AddBuild(testOrg, "sandbox", finished(now.Add(-time.Duration(i+1)*time.Minute), time.Second, "passed", map[string]string{"environment": "production"}))
		}
		f.AddBuild(testOrg, "sandbox", buildkite.Build{State: "running", CreatedAt: ts(now.Add(-time.Minute))})
		// Two annotated pipelines: the first cycle lists org-wide and sees sandbox's builds.
		h := start(t, f, []backstage.Component{component("shop", "shop"), component("api", "api")})
		got := h.metrics()
		for k := range got {
			if strings.Contains(k, "sandbox") {
				t.Errorf("series of an unannotated pipeline: %s", k)
			}
		}
		expect(t, got, map[string]float64{
			deployments("shop", "production", "shop", "passed"):                                       1,
			deployments("api", "production", "api", "failed"):                                         1,
			series("buildkite_deployments_running", "component", "shop", "environment", "production"): 0,
		})
		orgWide := false
		for _, r := range f.Requests() {
			orgWide = orgWide || r.Route == buildkitetest.RouteOrgBuilds
		}
		if !orgWide {
			t.Error("the test meant to cover the org-wide listing, which was not used")
		}
	})
}

func TestComponentMovedToAnotherPipeline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		f.AddBuild(testOrg, "shop-old", finished(now.Add(-time.Hour), time.Minute, "passed", nil))
		h := start(t, f, []backstage.Component{component("shop", "shop-old")})
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop-old", "passed"): 1})

		h.catalog.set([]backstage.Component{component("shop", "shop-new")})
		f.AddBuild(testOrg, "shop-old", finished(time.Now(), time.Second, "passed", nil))
		f.AddBuild(testOrg, "shop-new", finished(time.Now(), time.Second, "passed", nil))
		h.next()
		h.next()
		expect(t, h.metrics(), map[string]float64{
			// History stays, builds of the pipeline the component left are no longer counted.
			deployments("shop", "production", "shop-old", "passed"): 1,
			deployments("shop", "production", "shop-new", "passed"): 1,
		})
		// A component gone from the catalog stops being exported.
		h.catalog.set([]backstage.Component{component("api", "api")})
		h.next()
		if got := filter(h.metrics(), "buildkite_deployments_total"); len(filter(got, deployments("shop", "production", "shop-new", "passed"))) != 0 {
			t.Errorf("removed component still exported: %v", got)
		}
	})
}

func TestHostileMetaDataDoesNotCrash(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		long := strings.Repeat("é", 200) // 400 bytes
		f.AddBuild(testOrg, "shop", finished(now.Add(-2*time.Hour), time.Minute, "passed", map[string]string{"environment": "prod", "version": long}))
		f.AddBuild(testOrg, "api", finished(now.Add(-time.Hour), time.Minute, "passed", map[string]string{"environment": "qa\xff", "version": "1.0\xfe"}))
		h := start(t, f, []backstage.Component{component("shop", "shop"), component("api", "api")})
		got := h.metrics()
		info := filter(got, "buildkite_deployment_info{")
		if len(info) != 2 {
			t.Fatalf("info series: %v", info)
		}
		expect(t, got, map[string]float64{
			series("buildkite_deployment_info", "component", "shop", "environment", "production", "version", strings.Repeat("é", 64), "commit", sha(int(now.Add(-2*time.Hour).Unix()))): 1,
			deployments("api", "qa\uFFFD", "api", "passed"): 1,
		})
	})
}

func TestLeadTimeFromCommitTimeMetaData(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		committed := now.Add(-48 * time.Hour)
		f.AddBuild(testOrg, "shop", finished(now.Add(-2*time.Hour), 10*time.Minute, "passed", map[string]string{"commit-time": committed.Format(time.RFC3339)}))
		f.AddBuild(testOrg, "shop", finished(now.Add(-time.Hour), 10*time.Minute, "passed", map[string]string{"commit-time": "yesterday-ish"}))
		cfg := config.Default()
		cfg.CommitTimeMetaDataKey = "commit-time"
		h := start(t, f, []backstage.Component{component("shop", "shop")}, withConfig(cfg))
		first := now.Add(-2*time.Hour + 11*time.Minute).Sub(committed).Seconds()
		second := (11 * time.Minute).Seconds() // unreadable: from the build's own created_at
		expect(t, h.metrics(), map[string]float64{
			series("buildkite_deployment_lead_time_seconds_count", "component", "shop", "environment", "production"): 2,
			series("buildkite_deployment_lead_time_seconds_sum", "component", "shop", "environment", "production"):   first + second,
		})
	})
}

// retryOnGet is a client whose first Get-a-build of build number retries the build first: the
// build was listed finished failed, and someone retried it before the poller read its jobs.
type retryOnGet struct {
	Client
	f      *buildkitetest.Fake
	number int
	done   atomic.Bool
}

func (c *retryOnGet) GetBuild(ctx context.Context, org, pipeline string, number int, opts buildkite.GetBuildOptions) (*buildkite.Build, error) {
	if number == c.number && c.done.CompareAndSwap(false, true) {
		if err := c.f.RetryBuild(org, pipeline, number); err != nil {
			return nil, err
		}
	}
	return c.Client.GetBuild(ctx, org, pipeline, number, opts)
}

// TestBuildRetriedBetweenListingAndJobs: a failed build listed without jobs is retried before
// Get-a-build reads them. The jobs then show the failed attempt retried and a new one running;
// read with the listing's state, they made two failures of one (found by the simulated month of
// the benchmarks). The listing is stale: the build counts when it finishes again.
func TestBuildRetriedBetweenListingAndJobs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.AddPipeline(testOrg, buildkite.Pipeline{Slug: "shop"})
		cl := &retryOnGet{Client: newTestClient(t, f), f: f, number: 1}
		h := start(t, f, []backstage.Component{component("shop", "shop")}, func(o *Options) { o.Client = cl })
		h.next() // past the first cycles, which list jobs with the builds
		now := time.Now()
		b := f.AddBuild(testOrg, "shop", buildkite.Build{
			State: "failed", Commit: sha(8), CreatedAt: ts(now.Add(-9 * time.Minute)), StartedAt: ts(now.Add(-8 * time.Minute)),
			FailingAt: ts(now.Add(-time.Second)), FinishedAt: ts(now.Add(-time.Second)), Jobs: []buildkite.Job{{Type: "script", State: "failed", StartedAt: ts(now.Add(-8 * time.Minute)), FinishedAt: ts(now.Add(-time.Second))}},
		})
		if b.Number != cl.number {
			t.Fatalf("the build is #%d, want #%d", b.Number, cl.number)
		}
		h.next()
		if !cl.done.Load() {
			t.Fatal("the poller did not read the failed build's jobs")
		}
		failed, passed := deployments("shop", "production", "shop", "failed"), deployments("shop", "production", "shop", "passed")
		running := series("buildkite_deployments_running", "component", "shop", "environment", "production")
		// The open builds were listed before the retry: the build shows as running next cycle.
		expect(t, h.metrics(), map[string]float64{failed: 0})
		open, _ := f.Build(testOrg, "shop", b.Number)
		last := open.Jobs[len(open.Jobs)-1]
		if err := f.FinishJob(testOrg, "shop", b.Number, last.ID, "passed", time.Now(), time.Now().Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := f.FinishBuild(testOrg, "shop", b.Number, "passed", time.Now().Add(2*time.Second)); err != nil {
			t.Fatal(err)
		}
		h.next()
		h.next()
		expect(t, h.metrics(), map[string]float64{failed: 1, passed: 1, running: 0})
	})
}
