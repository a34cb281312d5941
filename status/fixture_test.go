package status

import (
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// fixtureNow is the clock of every fixture test: ages on the page are measured from it.
var fixtureNow = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// Hostile values, as the API or a catalog file could send them.
const (
	hostileLabel   = `evil<script>alert("label")</script>`
	hostileVersion = `<script>alert("version")</script>`
	hostileURL     = `javascript:alert(document.cookie)`
)

// The seeded problems the tests look for.
const (
	shopProblem    = "no build of acme/shop-deploy sets the meta-data environment; every deployment counts for production. Fix: run buildkite-agent meta-data set environment <name> in the deploy step."
	workerProblem  = "Buildkite answers 404 for acme/worker. Fix: correct the buildkite.com/pipeline-slug annotation, or give the token access to the pipeline."
	brokenYAML     = "catalog/broken.yaml:12"
	brokenYAMLText = "line 12: mapping values are not allowed in this context; fix the indentation"
)

// fakeSource serves fixed values; set swaps them the way the collector publishes a new snapshot.
type fakeSource struct {
	snap atomic.Pointer[snapshot.Snapshot]
	cat  atomic.Pointer[backstage.Snapshot]
	orgs []Organization
}

func (f *fakeSource) Snapshot() *snapshot.Snapshot  { return f.snap.Load() }
func (f *fakeSource) Catalog() *backstage.Snapshot  { return f.cat.Load() }
func (f *fakeSource) Organizations() []Organization { return f.orgs }

func newFixtureSource() *fakeSource {
	s := &fakeSource{orgs: fixtureOrganizations()}
	s.snap.Store(fixtureSnapshot())
	s.cat.Store(fixtureCatalog())
	return s
}

func sha(c byte) string { return strings.Repeat(string(c), 40) }

func deployed(version string, commit byte, ago time.Duration, pipeline string, number int) *snapshot.Deployed {
	return &snapshot.Deployed{
		Version: version, Commit: sha(commit), FinishedAt: fixtureNow.Add(-ago), Pipeline: pipeline, BuildNumber: number,
		WebURL: "https://buildkite.com/" + pipeline + "/builds/" + strconv.Itoa(number),
	}
}

func finished(passed, failed time.Duration) [snapshot.NumStates]time.Time {
	var t [snapshot.NumStates]time.Time
	if passed > 0 {
		t[0] = fixtureNow.Add(-passed)
	}
	if failed > 0 {
		t[1] = fixtureNow.Add(-failed)
	}
	return t
}

func fixtureSnapshot() *snapshot.Snapshot {
	evil := deployed(hostileVersion, 'e', 10*time.Minute, "acme/evil", 7)
	evil.WebURL = hostileURL
	// People and notes are free text from the build: escaped like the rest.
	evil.DeployedBy, evil.ReleaseNotes = hostileVersion, "<script>alert('notes')</script>"
	api := deployed("v1.4.2", 'a', 3*time.Hour, "acme/api-deploy-prod", 142)
	api.DeployedBy, api.ReleaseNotes = "Ada Lovelace", "* Faster checkout\n* Fixed the 500 on /cart"
	return &snapshot.Snapshot{
		Taken:  fixtureNow.Add(-20 * time.Second),
		Polled: true,
		Components: []snapshot.Component{
			{Label: "api", Ref: "component:default/api", Owner: "team-platform", System: "core", Lifecycle: "production",
				Pipelines: []string{"acme/api-deploy-prod", "acme/api-deploy-staging"},
				Environments: []snapshot.Environment{
					{Name: "production", LastFinished: finished(3*time.Hour, 0), Deployed: api},
					{Name: "staging", Failing: true, LastFinished: finished(26*time.Hour, time.Hour), Deployed: deployed("v1.5.0-rc1", 'b', 26*time.Hour, "acme/api-deploy-staging", 88)},
				}},
			{Label: hostileLabel, Ref: "component:default/evil", Owner: "team-<b>evil</b>", System: "core", Lifecycle: "production",
				Pipelines: []string{"acme/evil"},
				Environments: []snapshot.Environment{
					{Name: "production", LastFinished: finished(10*time.Minute, 0), Deployed: evil},
				}},
			{Label: "frontend/web", Ref: "component:frontend/web", Owner: "team-web", System: "commerce", Lifecycle: "experimental",
				Pipelines: []string{"acme/web-release"},
				Environments: []snapshot.Environment{
					{Name: "production", Running: 1, RunningSince: fixtureNow.Add(-2 * time.Minute), Awaiting: 1, AwaitingSince: fixtureNow.Add(-time.Hour)},
				}},
			{Label: "shop", Ref: "component:default/shop", Owner: "team-shop", System: "commerce", Lifecycle: "production",
				Pipelines: []string{"acme/shop-deploy"},
				Environments: []snapshot.Environment{
					{Name: "production", LastFinished: finished(5*24*time.Hour, 0), Deployed: deployed("2026.11.20", 'c', 5*24*time.Hour, "acme/shop-deploy", 301)},
				}},
			{Label: "worker", Ref: "component:default/worker", Owner: "team-platform", System: "core", Lifecycle: "production",
				Pipelines:    []string{"acme/worker"},
				Environments: []snapshot.Environment{{Name: "production"}}},
		},
		UnknownEnvironments: []string{"qa-eu"},
		PipelineProblems: []snapshot.PipelineProblem{
			{Pipeline: "acme/sandbox", Reason: "forbidden", Severity: "error", Since: fixtureNow.Add(-48 * time.Hour),
				Message: "The token may not read acme/sandbox. Fix: add the pipeline to the token's organizations, or remove the annotation."},
			{Pipeline: "acme/shop-deploy", Reason: "no_environment_metadata", Severity: "warning", Since: fixtureNow.Add(-72 * time.Hour), Message: shopProblem},
			{Pipeline: "acme/worker", Reason: "not_found", Severity: "error", Since: fixtureNow.Add(-time.Hour), Message: workerProblem},
		},
	}
}

func fixtureCatalog() *backstage.Snapshot {
	ref := func(p string) []backstage.PipelineRef {
		org, name, _ := strings.Cut(p, "/")
		return []backstage.PipelineRef{{Org: org, Pipeline: name}}
	}
	return &backstage.Snapshot{
		LastRefreshSuccess: true,
		LastSuccess:        fixtureNow.Add(-4 * time.Minute),
		Components: []backstage.Component{
			{Name: "api", Namespace: "default", Label: "api", Ref: "component:default/api", Owner: "team-platform", Source: "catalog/api.yaml",
				Pipelines: []backstage.PipelineRef{{Org: "acme", Pipeline: "api-deploy-prod"}, {Org: "acme", Pipeline: "api-deploy-staging"}}},
			{Name: "newsvc", Namespace: "default", Label: "newsvc", Ref: "component:default/newsvc", Owner: "team-shop", System: "commerce",
				Lifecycle: "experimental", Source: "catalog/newsvc.yaml", Pipelines: ref("acme/newsvc-deploy")},
			{Name: "shop", Namespace: "default", Label: "shop", Ref: "component:default/shop", Owner: "team-shop", Source: "catalog/shop.yaml", Pipelines: ref("acme/shop-deploy")},
		},
		Problems: []backstage.Problem{
			{Reason: backstage.ReasonMalformedYAML, Source: brokenYAML, Message: brokenYAMLText},
			{Reason: backstage.ReasonInvalidAnnotation, Source: "catalog/billing.yaml:7", Entity: "component:default/billing",
				Message: `"billing" has no "/"; write <org-slug>/billing`},
		},
	}
}

func fixtureOrganizations() []Organization {
	return []Organization{
		{Name: "acme", LastPoll: fixtureNow.Add(-10 * time.Second), LastSuccess: fixtureNow.Add(-10 * time.Second), NextPoll: fixtureNow.Add(20 * time.Second),
			APIBudgetRemaining: 180, APIBudgetLimit: 200, BackfillDone: 30, BackfillTotal: 30},
		{Name: "globex", LastPoll: fixtureNow.Add(-5 * time.Second), LastSuccess: fixtureNow.Add(-5 * time.Second), NextPoll: fixtureNow.Add(time.Second),
			APIBudgetRemaining: 150, APIBudgetLimit: 200, Backfilling: true, BackfillDone: 3, BackfillTotal: 10,
			BackfillRemainingRequests: 240, BackfillETA: 8 * time.Minute},
		{Name: "initech", LastPoll: fixtureNow.Add(-30 * time.Second), NextPoll: fixtureNow.Add(30 * time.Second),
			LastError: "GET /v2/organizations/initech/builds: 401 Unauthorized", APIBudgetRemaining: Unknown, APIBudgetLimit: Unknown,
			BackfillRemainingRequests: Unknown},
	}
}
