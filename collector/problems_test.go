package collector

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

func withLogger(l log.Logger) harnessOpt { return func(o *Options) { o.Logger = l } }

func pipelineError(pipeline, reason string) string {
	return series("buildkite_exporter_pipeline_errors", "pipeline", testOrg+"/"+pipeline, "reason", reason)
}

// TestMisspeltPipelineIsOneProblem: in an organization busy with pipelines no component names
// (so each annotated pipeline is listed on its own), one component's annotation names a
// pipeline that does not exist. The API answers 404 for it; that is one problem on that
// pipeline, named in the metric and once in the log, and every other component is counted
// exactly, with buildkite_up 1.
func TestMisspeltPipelineIsOneProblem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		f.AddBuild(testOrg, "shop-deploy", finished(now.Add(-5*time.Hour), 5*time.Minute, "passed", map[string]string{"environment": "production"}))
		f.AddBuild(testOrg, "api-deploy", finished(now.Add(-4*time.Hour), 5*time.Minute, "failed", map[string]string{"environment": "production"}))
		for i := range 400 {
			f.AddBuild(testOrg, "monorepo-ci", finished(now.Add(-time.Duration(i+1)*time.Minute), time.Second, "passed", nil))
		}
		var logs testenv.LogBuffer
		comps := []backstage.Component{component("shop", "shop-deploy"), component("api", "api-deploy"), component("typo", "shop-deploi")}
		h := start(t, f, comps, withLogger(log.NewLogfmtLogger(&logs)))
		for range 3 {
			h.next()
		}
		expect(t, h.metrics(), map[string]float64{
			deployments("shop", "production", "shop-deploy", "passed"): 1,
			deployments("api", "production", "api-deploy", "failed"):   1,
			series("buildkite_up"):                    1,
			pipelineError("shop-deploi", "not_found"): 1,
			pipelineError("shop-deploy", "not_found"): 0,
			pipelineError("api-deploy", "not_found"):  0,
		})
		if !h.c.Ready() {
			t.Error("not ready: one misspelt pipeline must not hold the organization back")
		}
		if n := strings.Count(logs.String(), `msg="Pipeline problem: Buildkite answers 404 for the builds of pipeline acme/shop-deploi`); n != 1 {
			t.Errorf("the problem is logged %d times, want once:\n%s", n, logs.String())
		}
		var problem string
		for _, p := range h.c.Snapshot().PipelineProblems {
			if p.Pipeline == "acme/shop-deploi" && p.Reason == "not_found" && p.Severity == "error" {
				problem = p.Message
			}
		}
		if !strings.Contains(problem, "component typo") {
			t.Errorf("snapshot problem %q does not name the component to fix", problem)
		}
		// The pipeline is created (the annotation was right after all): its history is read and
		// the problem is resolved.
		f.AddBuild(testOrg, "shop-deploi", finished(time.Now().Add(-time.Hour), time.Minute, "passed", map[string]string{"environment": "production"}))
		h.next()
		h.next()
		expect(t, h.metrics(), map[string]float64{
			deployments("typo", "production", "shop-deploi", "passed"): 1,
			pipelineError("shop-deploi", "not_found"):                  0,
			deployments("shop", "production", "shop-deploy", "passed"): 1,
		})
		if !strings.Contains(logs.String(), `msg="Pipeline problem resolved"`) {
			t.Errorf("no resolution logged:\n%s", logs.String())
		}
	})
}

// TestMisspeltPipelineOrgWide: with a quiet organization the builds are listed org-wide, so a
// misspelt pipeline simply has no builds; after the backfill one lookup tells it does not
// exist, and a pipeline that exists but never deployed is a warning instead.
func TestMisspeltPipelineOrgWide(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		f.AddBuild(testOrg, "shop-deploy", finished(now.Add(-5*time.Hour), 5*time.Minute, "passed", map[string]string{"environment": "production"}))
		f.AddPipeline(testOrg, pipelineNamed("idle-deploy"))
		comps := []backstage.Component{component("shop", "shop-deploy"), component("typo", "shop-deploi"), component("idle", "idle-deploy")}
		h := start(t, f, comps)
		// One lookup every existenceCheckEvery cycles: both pipelines are looked up within two.
		time.Sleep(2 * existenceCheckEvery * testInterval)
		h.next()
		expect(t, h.metrics(), map[string]float64{
			deployments("shop", "production", "shop-deploy", "passed"): 1,
			pipelineError("shop-deploi", "not_found"):                  1,
			pipelineError("idle-deploy", "not_found"):                  0,
			pipelineError("idle-deploy", "no_deployments_in_window"):   1,
			pipelineError("shop-deploy", "no_deployments_in_window"):   0,
			pipelineError("shop-deploy", "no_environment_metadata"):    0,
			series("buildkite_up"):                                     1,
		})
		// Looked up once, not every cycle.
		before := len(f.Requests())
		time.Sleep(3 * existenceCheckEvery * testInterval)
		h.next()
		for _, r := range f.Requests()[before:] {
			if strings.Contains(r.Path, "/pipelines/shop-deploi") || strings.Contains(r.Path, "/pipelines/idle-deploy") {
				t.Errorf("pipeline looked up again within %s: %s", existenceRecheck, r.Path)
			}
		}
	})
}

// TestEveryPipelineRefusedIsTheOrganization: when the organization itself is misspelt, every
// pipeline 404s and so does the organization: the poll fails and says so.
func TestEveryPipelineRefusedIsTheOrganization(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		c := component("shop", "shop-deploy")
		c.Pipelines[0].Org = "acmee"
		h := start(t, f, []backstage.Component{c})
		expect(t, h.metrics(), map[string]float64{series("buildkite_up"): 0})
		if h.c.Ready() {
			t.Error("ready although the organization cannot be read")
		}
	})
}

func pipelineNamed(slug string) buildkite.Pipeline {
	return buildkite.Pipeline{Slug: slug, Name: slug, DefaultBranch: "main"}
}

// TestFutureTimestampRefused: a failed build stamped 70 years ahead is not counted (it would
// stay the latest outcome, failing for ever); it is a problem on its pipeline, and a later pass
// is what the environment shows.
func TestFutureTimestampRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		md := map[string]string{"environment": "production"}
		bad := finished(now.Add(-time.Hour), time.Minute, "failed", md)
		bad.FinishedAt = ts(now.AddDate(70, 0, 0))
		f.AddBuild(testOrg, "shop", bad)
		h := start(t, f, []backstage.Component{component("shop", "shop")})
		time.Sleep(testInterval - time.Second)
		f.AddBuild(testOrg, "shop", finished(time.Now().Add(-2*time.Minute), time.Minute, "passed", md))
		h.next()
		expect(t, h.metrics(), map[string]float64{
			deployments("shop", "production", "shop", "failed"):                                      0,
			deployments("shop", "production", "shop", "passed"):                                      1,
			series("buildkite_deployment_failing", "component", "shop", "environment", "production"): 0,
			pipelineError("shop", "future_timestamp"):                                                1,
		})
	})
}
