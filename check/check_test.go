package check

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/fixture"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
)

var now = time.Date(2026, 3, 10, 12, 0, 0, 0, time.UTC)

// env is the fixture organization on the in-process fake, its catalog on disk, and the options
// that check it with the fixture's token.
type env struct {
	t    *testing.T
	f    *buildkitetest.Fake
	dir  string
	opts Options
}

func newEnv(t *testing.T) *env {
	t.Helper()
	f := buildkitetest.New(buildkitetest.WithClock(func() time.Time { return now }))
	components := fixture.Populate(f, now)
	dir := t.TempDir()
	if err := fixture.WriteFiles(dir, components); err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, f: f, dir: dir}
	e.opts = Options{
		Catalog:           []backstage.Source{backstage.NewFileSource([]string{filepath.Join(dir, "catalog")}, log.NewNopLogger())},
		GrafanaURL:        "https://grafana.acme.test",
		Token:             fixture.Token,
		APIURL:            buildkitetest.InProcessBaseURL,
		HTTPClient:        &http.Client{Transport: f.Transport()},
		RequestsPerMinute: math.Inf(1),
		Backfill:          30 * 24 * time.Hour,
		Now:               func() time.Time { return now },
	}
	return e
}

// component adds a catalog-info.yaml naming slug ("<org>/<pipeline>").
func (e *env) component(name, slug string) {
	e.t.Helper()
	doc := fmt.Sprintf(`apiVersion: backstage.io/v1alpha1
kind: Component
metadata:
  name: %s
  annotations:
    buildkite.com/pipeline-slug: %s
spec: {owner: team-x, type: service, lifecycle: production}
`, name, slug)
	e.write(filepath.Join("catalog", name+".yaml"), doc)
}

func (e *env) write(name, content string) string {
	e.t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) run() *Report {
	e.t.Helper()
	r := Run(context.Background(), e.opts)
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		e.t.Fatal(err)
	}
	e.t.Logf("report:\n%s", buf.String())
	if strings.Contains(buf.String(), fixture.Token) {
		e.t.Error("the token appears in the report")
	}
	return r
}

// deploy adds a passed build created at created with the given meta-data.
func (e *env) deploy(org, pipeline string, created time.Time, md map[string]string) {
	e.f.AddBuild(org, pipeline, buildkite.Build{State: buildkite.StatePassed, Branch: "main", Commit: strings.Repeat("9", 40),
		MetaData: md, CreatedAt: buildkite.Timestamp{Time: created}, StartedAt: buildkite.Timestamp{Time: created},
		FinishedAt: buildkite.Timestamp{Time: created.Add(time.Minute)}})
}

func find(r *Report, sev Severity, check, subject string) *Finding {
	for i, f := range r.Findings {
		if f.Severity == sev && f.Check == check && (subject == "" || f.Subject == subject) {
			return &r.Findings[i]
		}
	}
	return nil
}

// mustFind returns the finding of that severity, check and subject ("" = any) whose message and
// fix hold every want, failing the test when there is none.
func mustFind(t *testing.T, r *Report, sev Severity, check, subject string, wants ...string) *Finding {
	t.Helper()
next:
	for i, f := range r.Findings {
		if f.Severity != sev || f.Check != check || subject != "" && f.Subject != subject {
			continue
		}
		for _, w := range wants {
			if !strings.Contains(f.Message+" | "+f.Fix, w) {
				continue next
			}
		}
		return &r.Findings[i]
	}
	t.Fatalf("no %s finding of check %s for %q holding %q; findings:\n%s", sev, check, subject, wants, dump(r))
	return nil
}

func mustNotChecked(t *testing.T, r *Report, check, subject, want string) {
	t.Helper()
	for _, n := range r.NotChecked {
		if n.Check == check && (subject == "" || n.Subject == subject) && strings.Contains(n.Reason, want) {
			return
		}
	}
	t.Errorf("no not_checked entry %s %s with %q; not checked: %+v", check, subject, want, r.NotChecked)
}

func dump(r *Report) string {
	var b strings.Builder
	for _, f := range r.Findings {
		fmt.Fprintf(&b, "  %s %s %s: %s\n", f.Severity, f.Check, f.Subject, f.Message)
	}
	return b.String()
}

func requests(f *buildkitetest.Fake, route string) int {
	n := 0
	for _, r := range f.Requests() {
		if r.Route == route {
			n++
		}
	}
	return n
}

// The fixture passes with warnings only: three pipelines fall back to the slug or the default
// environment. Every annotated pipeline is checked in three requests.
func TestFixtureHasWarningsOnly(t *testing.T) {
	e := newEnv(t)
	r := e.run()
	if r.ExitCode() != 0 || r.Summary.Errors != 0 {
		t.Fatalf("exit %d with errors:\n%s", r.ExitCode(), dump(r))
	}
	mustFind(t, r, SeverityOK, CheckToken, "token", "read_builds, read_pipelines", "never expires")
	mustFind(t, r, SeverityOK, CheckPipeline, fixture.Org, "all 5 pipelines")
	mustFind(t, r, SeverityOK, CheckBuilds, fixture.Org)
	mustFind(t, r, SeverityWarning, CheckEnvironment, "acme/worker", `counted in "production", from the default environment`)
	mustFind(t, r, SeverityWarning, CheckEnvironment, "acme/api-deploy-prod", `from the pipeline slug's token "prod"`)
	if f := find(r, SeverityWarning, CheckEnvironment, "acme/shop-deploy"); f != nil {
		t.Errorf("shop's builds all set environment meta-data, yet: %s", f.Message)
	}
	if r.Summary.APIRequests != 3 || len(e.f.Requests()) != 3 {
		t.Errorf("%d requests counted, %d served; want 3 (token, pipeline listing, organization builds)", r.Summary.APIRequests, len(e.f.Requests()))
	}
	if r.Summary.Components != 4 || r.Summary.Pipelines != 5 || r.Summary.Organizations != 1 {
		t.Errorf("summary %+v", r.Summary)
	}
}

func TestNoTokenIsAnError(t *testing.T) {
	e := newEnv(t)
	e.opts.Token, e.opts.TokenErr = "", fmt.Errorf("%w: set the file flag or the environment variable BUILDKITE_API_TOKEN", secret.ErrMissing)
	r := e.run()
	if r.ExitCode() != 1 {
		t.Errorf("exit %d without a token", r.ExitCode())
	}
	mustFind(t, r, SeverityError, CheckToken, "token", "serve refuses to start", "--buildkite.token-file", "$BUILDKITE_API_TOKEN", "read_builds")
	mustNotChecked(t, r, CheckPipeline, "", "no usable token")
	if n := len(e.f.Requests()); n != 0 {
		t.Errorf("%d API requests without a token", n)
	}
	// Offline changes nothing: serve needs the token either way.
	e.opts.Offline = true
	if r := e.run(); r.ExitCode() != 1 || find(r, SeverityError, CheckToken, "token") == nil {
		t.Errorf("offline without a token: exit %d\n%s", r.ExitCode(), dump(r))
	}
}

func TestMissingScope(t *testing.T) {
	e := newEnv(t)
	e.f.SetToken(fixture.Token, "read_pipelines")
	r := e.run()
	if r.ExitCode() != 1 {
		t.Errorf("exit %d with read_builds missing", r.ExitCode())
	}
	mustFind(t, r, SeverityError, CheckToken, "token", "lacks the read_builds scope", "add read_builds")
	for _, f := range r.Findings {
		if strings.Contains(f.Message, "lacks the read_pipelines") {
			t.Errorf("reported a scope the token has: %s", f.Message)
		}
	}
	// Pipelines are still checked; builds cannot be.
	mustFind(t, r, SeverityOK, CheckPipeline, fixture.Org)
	mustNotChecked(t, r, CheckBuilds, fixture.Org, "lacks read_builds")
	if n := requests(e.f, buildkitetest.RouteOrgBuilds) + requests(e.f, buildkitetest.RoutePipelineBuilds); n != 0 {
		t.Errorf("%d build listings sent with a token lacking read_builds", n)
	}
}

// Without read_pipelines the builds listings still find a missing pipeline, by its 404.
func TestMissingReadPipelinesStillChecksBuilds(t *testing.T) {
	e := newEnv(t)
	e.f.SetToken(fixture.Token, "read_builds")
	e.component("typo", "acme/wroker")
	r := e.run()
	mustFind(t, r, SeverityError, CheckToken, "token", "lacks the read_pipelines scope")
	mustNotChecked(t, r, CheckPipeline, fixture.Org, "lacks read_pipelines")
	mustFind(t, r, SeverityError, CheckPipeline, "acme/wroker", "404")
	mustFind(t, r, SeverityWarning, CheckEnvironment, "acme/worker")
}

func TestRevokedToken(t *testing.T) {
	e := newEnv(t)
	e.opts.Token = "bkua_revoked"
	r := e.run()
	if r.ExitCode() != 1 {
		t.Errorf("exit %d with a rejected token", r.ExitCode())
	}
	mustFind(t, r, SeverityError, CheckToken, "token", "HTTP 401", "invalid, expired or revoked", "api-access-tokens")
	mustNotChecked(t, r, CheckOrganization, "", "could not be checked")
	if n := len(e.f.Requests()); n != 1 {
		t.Errorf("%d requests after a 401 on the token, want 1", n)
	}
}

// expiringTransport serves the fake, adding expires_at to the access-token answer (the fake's
// tokens never expire).
type expiringTransport struct {
	base    http.RoundTripper
	expires time.Time
}

func (t expiringTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.base.RoundTrip(req)
	if err != nil || req.URL.Path != "/v2/access-token" || resp.StatusCode != 200 {
		return resp, err
	}
	var body map[string]any
	b, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(b, &body); err != nil {
		return nil, err
	}
	body["expires_at"] = t.expires.UTC().Format("2006-01-02 15:04:05 UTC")
	b, _ = json.Marshal(body)
	resp.Body, resp.ContentLength = io.NopCloser(bytes.NewReader(b)), int64(len(b))
	return resp, nil
}

func TestTokenExpiry(t *testing.T) {
	e := newEnv(t)
	e.opts.HTTPClient = &http.Client{Transport: expiringTransport{e.f.Transport(), now.Add(3 * 24 * time.Hour)}}
	r := e.run()
	mustFind(t, r, SeverityWarning, CheckToken, "token", "expires soon", "in 3 days", "create a new token")
	if r.ExitCode() != 0 {
		t.Errorf("a token expiring in 3 days is a warning, exit %d", r.ExitCode())
	}
	e.opts.HTTPClient = &http.Client{Transport: expiringTransport{e.f.Transport(), now.Add(90 * 24 * time.Hour)}}
	r = e.run()
	mustFind(t, r, SeverityOK, CheckToken, "token", "expires at 2026-06-08")
}

// A typo'd slug is one error, with the closest existing slug; every other pipeline of the
// organization is still checked; existence is read from the listing, never one request per
// pipeline.
func TestMissingPipelineSuggestsTheClosest(t *testing.T) {
	e := newEnv(t)
	e.component("typo", "acme/shop-deplyo")
	e.component("far", "acme/zzzzzzzz")
	r := e.run()
	if r.ExitCode() != 1 {
		t.Errorf("exit %d with a missing pipeline", r.ExitCode())
	}
	mustFind(t, r, SeverityError, CheckPipeline, "acme/shop-deplyo",
		`no pipeline "shop-deplyo"`, "did you mean acme/shop-deploy?", "component:default/typo", "404", "may not see")
	far := mustFind(t, r, SeverityError, CheckPipeline, "acme/zzzzzzzz")
	if strings.Contains(far.Fix, "did you mean") {
		t.Errorf("suggested a slug for a name far from all: %s", far.Fix)
	}
	mustFind(t, r, SeverityWarning, CheckEnvironment, "acme/worker") // the others are still checked
	if n := requests(e.f, buildkitetest.RoutePipeline); n != 0 {
		t.Errorf("%d single-pipeline requests; existence must come from the listing", n)
	}
	if n := requests(e.f, buildkitetest.RoutePipelines); n != 1 {
		t.Errorf("%d pipeline listings, want 1", n)
	}
}

// The listing is read page by page (100 a page): a pipeline on the second page exists.
func TestPipelineListingPages(t *testing.T) {
	e := newEnv(t)
	for i := range 150 {
		e.f.AddPipeline("big", buildkite.Pipeline{Slug: fmt.Sprintf("p%03d", i)})
	}
	e.deploy("big", "p149", now.Add(-time.Hour), map[string]string{"environment": "production"})
	e.component("big", "big/p149")
	r := e.run()
	mustFind(t, r, SeverityOK, CheckPipeline, "big", "all 1 pipeline")
	mustFind(t, r, SeverityOK, CheckEnvironment, "big")
	var pages int
	for _, q := range e.f.Requests() {
		if q.Route == buildkitetest.RoutePipelines && strings.Contains(q.Path, "/big/") {
			pages++
		}
	}
	if pages != 2 {
		t.Errorf("%d listing requests for 150 pipelines, want 2", pages)
	}
}

func TestUnknownOrganization(t *testing.T) {
	e := newEnv(t)
	e.component("lost", "acme-typo/shop-deploy")
	r := e.run()
	if r.ExitCode() != 1 {
		t.Errorf("exit %d with an unknown organization", r.ExitCode())
	}
	mustFind(t, r, SeverityError, CheckOrganization, "acme-typo", "unknown or not visible", "404", "shop-deploy", "component:default/lost")
	if f := find(r, SeverityError, CheckPipeline, "acme-typo/shop-deploy"); f != nil {
		t.Errorf("the organization's pipelines are reported one by one too: %s", f.Message)
	}
	mustFind(t, r, SeverityOK, CheckOrganization, fixture.Org)
	mustFind(t, r, SeverityOK, CheckBuilds, fixture.Org)
}

func TestNoBuildsInWindow(t *testing.T) {
	e := newEnv(t)
	e.f.AddPipeline("quiet", buildkite.Pipeline{Slug: "old-deploy"})
	e.deploy("quiet", "old-deploy", now.Add(-60*24*time.Hour), map[string]string{"environment": "production"})
	e.component("old", "quiet/old-deploy")
	r := e.run()
	mustFind(t, r, SeverityWarning, CheckBuilds, "quiet/old-deploy", "no builds created in the last 30d", "--history.backfill")
	if r.ExitCode() != 0 {
		t.Errorf("no builds is a warning, exit %d", r.ExitCode())
	}
	// A longer window finds the build.
	e.opts.Backfill = 90 * 24 * time.Hour
	r = e.run()
	mustFind(t, r, SeverityOK, CheckBuilds, "quiet")
}

func TestUnnormalisedEnvironment(t *testing.T) {
	e := newEnv(t)
	e.f.AddPipeline("geo", buildkite.Pipeline{Slug: "shop-geo"})
	e.deploy("geo", "shop-geo", now.Add(-2*time.Hour), map[string]string{"environment": "prod-east"})
	e.deploy("geo", "shop-geo", now.Add(-time.Hour), map[string]string{"shop:eu-west:deployed": "true"})
	e.deploy("geo", "shop-geo", now.Add(-30*time.Minute), map[string]string{"environment": "Production"})
	e.component("geo", "geo/shop-geo")
	r := e.run()
	mustFind(t, r, SeverityWarning, CheckEnvironment, "geo/shop-geo", `"prod-east"`, "not in the alias table", "environment_aliases")
	var names []string
	for _, f := range r.Findings {
		if f.Subject == "geo/shop-geo" && strings.Contains(f.Message, "alias table") {
			names = append(names, f.Message)
		}
	}
	if len(names) != 2 || !strings.Contains(strings.Join(names, "|"), `"eu-west"`) {
		t.Errorf("want one warning each for prod-east and eu-west, got %q", names)
	}
	if r.ExitCode() != 0 {
		t.Errorf("an unknown environment is a warning, exit %d", r.ExitCode())
	}
	// Named in the alias table, it is fine.
	e.opts.ConfigFile = e.write("config.yml", "environment_aliases: {prod-east: production, eu-west: production}\n")
	r = e.run()
	mustFind(t, r, SeverityOK, CheckEnvironment, "geo")
}

func TestSomeBuildsWithoutEnvironment(t *testing.T) {
	e := newEnv(t)
	e.f.AddPipeline("mix", buildkite.Pipeline{Slug: "app"})
	e.deploy("mix", "app", now.Add(-2*time.Hour), nil)
	e.deploy("mix", "app", now.Add(-time.Hour), map[string]string{"environment": "staging"})
	e.component("app", "mix/app")
	r := e.run()
	mustFind(t, r, SeverityWarning, CheckEnvironment, "mix/app", "1 of the 2 recent deployment builds", `"production"`)
}

func TestWebConfig(t *testing.T) {
	e := newEnv(t)
	e.opts.WebConfigFile = e.write("web.yml", "basic_auth_users:\n  alice: not-a-bcrypt-hash\n")
	r := e.run()
	if r.ExitCode() != 1 {
		t.Errorf("exit %d with a bad web config", r.ExitCode())
	}
	mustFind(t, r, SeverityError, CheckWebConfig, e.opts.WebConfigFile, "serve would refuse", "htpasswd")

	e.opts.WebConfigFile = e.write("web.yml", "basic_auth_user:\n  alice: x\n")
	r = e.run()
	f := mustFind(t, r, SeverityError, CheckWebConfig, e.opts.WebConfigFile, "basic_auth_user")
	if strings.Contains(f.Message, "web.Config") || strings.Contains(f.Message, "\n") {
		t.Errorf("web config message speaks Go: %q", f.Message)
	}

	e.opts.WebConfigFile = e.write("web.yml", "http_server_config:\n  headers:\n    X-Content-Type-Options: nosniff\n")
	mustFind(t, e.run(), SeverityOK, CheckWebConfig, e.opts.WebConfigFile)
}

func TestConfigFileWithSeveralErrors(t *testing.T) {
	e := newEnv(t)
	e.opts.ConfigFile = e.write("config.yml", `default_enviroment: prod
slos:
  window: soon
  objectives:
    production: {success: 1.5}
alerts:
  min_deployments: many
`)
	r := e.run()
	if r.ExitCode() != 1 {
		t.Errorf("exit %d with a bad config file", r.ExitCode())
	}
	var got []string
	for _, f := range r.Findings {
		if f.Check == CheckConfigFile && f.Severity == SeverityError {
			got = append(got, f.Subject+" "+f.Message)
		}
	}
	p := e.opts.ConfigFile
	want := []string{
		p + `:1 default_enviroment: unknown key (did you mean "default_environment"?)`,
		p + `:3 slos.window: "soon" is not a duration`,
		p + `:5 slos.objectives.production.success: 1.5 must be between 0 and 1`,
		p + `:7 alerts.min_deployments: expected a whole number, got "many"`,
	}
	if len(got) != len(want) {
		t.Fatalf("got %d config findings, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("finding %d = %q, want prefix %q", i, got[i], want[i])
		}
	}
	// The API checks still run, with the default configuration.
	mustFind(t, r, SeverityOK, CheckPipeline, fixture.Org)

	e.opts.ConfigFile = filepath.Join(e.dir, "missing.yml")
	mustFind(t, e.run(), SeverityError, CheckConfigFile, e.opts.ConfigFile, "no such file")
}

func TestCatalogProblemsAreErrors(t *testing.T) {
	e := newEnv(t)
	e.component("broken", "Acme/My Pipeline")
	e.write(filepath.Join("catalog", "bad.yaml"), "kind: Component\nmetadata:\n  annotations: {buildkite.com/pipeline-slug: acme/x\n  name: [\n")
	r := e.run()
	if r.ExitCode() != 1 {
		t.Errorf("exit %d with catalog problems", r.ExitCode())
	}
	mustFind(t, r, SeverityError, CheckCatalog, "", "invalid_annotation", "<org-slug>/<pipeline-slug>")
	mustFind(t, r, SeverityError, CheckCatalog, "", "malformed_yaml")
	mustFind(t, r, SeverityOK, CheckCatalog, "(catalog)", "4 components")

	e.opts.Catalog, e.opts.CatalogErr = nil, fmt.Errorf("no catalog: give --catalog.file")
	mustFind(t, e.run(), SeverityError, CheckCatalog, "(catalog)", "no catalog")
}

func TestGrafanaPlaceholder(t *testing.T) {
	e := newEnv(t)
	e.opts.GrafanaURL = PlaceholderGrafanaURL
	r := e.run()
	mustFind(t, r, SeverityWarning, CheckGrafanaURL, PlaceholderGrafanaURL, "placeholder", "--grafana.url")
	if r.ExitCode() != 0 {
		t.Errorf("the placeholder is a warning, exit %d", r.ExitCode())
	}
}

func TestOffline(t *testing.T) {
	e := newEnv(t)
	e.opts.Offline = true
	r := e.run()
	if n := len(e.f.Requests()); n != 0 || r.Summary.APIRequests != 0 {
		t.Errorf("%d requests offline", n)
	}
	if r.ExitCode() != 0 || !r.Summary.Offline {
		t.Errorf("offline check of the fixture: exit %d, summary %+v", r.ExitCode(), r.Summary)
	}
	mustFind(t, r, SeverityOK, CheckToken, "token", "--offline")
	for _, c := range []string{CheckToken, CheckOrganization, CheckPipeline, CheckBuilds, CheckEnvironment} {
		mustNotChecked(t, r, c, "", "--offline")
	}
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "offline: the Buildkite API was not asked") {
		t.Errorf("the table does not say it was offline:\n%s", buf.String())
	}
}

// With a cap of 2 the token and the first organization's listing fit; the rest is listed as not
// checked, and the cap is never exceeded.
func TestRequestCap(t *testing.T) {
	e := newEnv(t)
	e.f.AddPipeline("zeta", buildkite.Pipeline{Slug: "z-deploy"})
	e.component("z", "zeta/z-deploy")
	e.opts.MaxRequests = 2
	r := e.run()
	if n := len(e.f.Requests()); n > 2 || r.Summary.APIRequests > 2 {
		t.Errorf("%d requests served, %d counted, with a cap of 2", n, r.Summary.APIRequests)
	}
	mustFind(t, r, SeverityOK, CheckPipeline, fixture.Org)
	mustNotChecked(t, r, CheckPipeline, "zeta", "request cap of 2 reached")
	mustNotChecked(t, r, CheckBuilds, fixture.Org, "request cap of 2 reached")
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "Not checked:") || !strings.Contains(buf.String(), "--check.max-requests") {
		t.Errorf("the table does not say what the cap left out:\n%s", buf.String())
	}
}

// When the organization's page of builds is full, the pipelines missing from it get a request
// of their own; when it is not, their absence is conclusive and costs nothing.
func TestBusyOrganizationFallsBackToPipelineRequests(t *testing.T) {
	e := newEnv(t)
	e.f.AddPipeline("busy", buildkite.Pipeline{Slug: "ci"})
	e.f.AddPipeline("busy", buildkite.Pipeline{Slug: "deploy"})
	e.f.AddPipeline("busy", buildkite.Pipeline{Slug: "release"})
	e.deploy("busy", "deploy", now.Add(-48*time.Hour), map[string]string{"environment": "production"})
	for i := range 120 {
		e.deploy("busy", "ci", now.Add(-time.Duration(i)*time.Minute), map[string]string{"environment": "ci"})
	}
	e.component("ci", "busy/ci")
	e.component("deploy", "busy/deploy")
	e.component("release", "busy/release")
	r := e.run()
	mustFind(t, r, SeverityWarning, CheckBuilds, "busy/release", "no builds created")
	if f := find(r, SeverityWarning, CheckBuilds, "busy/deploy"); f != nil {
		t.Errorf("deploy's build, beyond the organization's first page, was missed: %s", f.Message)
	}
	mustFind(t, r, SeverityWarning, CheckEnvironment, "busy/ci", `"ci"`)
	var perPipeline []string
	for _, q := range e.f.Requests() {
		if q.Route == buildkitetest.RoutePipelineBuilds {
			perPipeline = append(perPipeline, q.Path)
		}
	}
	slices.Sort(perPipeline)
	if want := []string{"/v2/organizations/busy/pipelines/deploy/builds", "/v2/organizations/busy/pipelines/release/builds"}; !slices.Equal(perPipeline, want) {
		t.Errorf("per-pipeline requests %v, want %v", perPipeline, want)
	}
	if n := requests(e.f, buildkitetest.RouteOrgBuilds); n != 2 { // acme and busy, one page each
		t.Errorf("%d organization build listings, want 2", n)
	}
}

func TestArchivedPipeline(t *testing.T) {
	e := newEnv(t)
	e.f.AddPipeline("old", buildkite.Pipeline{Slug: "legacy", ArchivedAt: buildkite.Timestamp{Time: now.Add(-24 * time.Hour)}})
	e.component("legacy", "old/legacy")
	mustFind(t, e.run(), SeverityWarning, CheckPipeline, "old/legacy", "archived on 2026-03-09")
}

func TestJSONSchema(t *testing.T) {
	e := newEnv(t)
	e.component("typo", "acme/shop-deplyo")
	e.opts.MaxRequests = 2
	r := e.run()
	var buf bytes.Buffer
	if err := r.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), fixture.Token) {
		t.Error("the token appears in the JSON")
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	keys := func(raw json.RawMessage) []string {
		var m map[string]any
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s: %v", raw, err)
		}
		var ks []string
		for k := range m {
			ks = append(ks, k)
		}
		slices.Sort(ks)
		return ks
	}
	if got := keys(buf.Bytes()); !slices.Equal(got, []string{"findings", "not_checked", "schema_version", "summary"}) {
		t.Errorf("top-level keys %v", got)
	}
	if string(doc["schema_version"]) != "1" {
		t.Errorf("schema_version %s", doc["schema_version"])
	}
	var findings, notChecked []json.RawMessage
	if err := json.Unmarshal(doc["findings"], &findings); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(doc["not_checked"], &notChecked); err != nil {
		t.Fatal(err)
	}
	var sawError bool
	for _, f := range findings {
		ks := keys(f)
		var sev struct{ Severity string }
		_ = json.Unmarshal(f, &sev)
		want := []string{"check", "fix", "message", "severity", "subject"}
		if sev.Severity == "ok" {
			want = []string{"check", "message", "severity", "subject"}
		}
		if !slices.Equal(ks, want) {
			t.Errorf("finding keys %v, want %v", ks, want)
		}
		sawError = sawError || sev.Severity == "error"
	}
	if !sawError || len(notChecked) == 0 {
		t.Errorf("want an error and a not_checked entry in %s", buf.String())
	}
	for _, n := range notChecked {
		if got := keys(n); !slices.Equal(got, []string{"check", "reason", "subject"}) {
			t.Errorf("not_checked keys %v", got)
		}
	}
	want := []string{"api_requests", "components", "errors", "history_backfill", "max_requests", "offline", "ok", "organizations", "pipelines", "warnings"}
	if got := keys(doc["summary"]); !slices.Equal(got, want) {
		t.Errorf("summary keys %v, want %v", got, want)
	}
	// Empty lists are [] rather than null.
	buf.Reset()
	if err := (&Report{}).finishAndJSON(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), `"findings": []`) || !strings.Contains(buf.String(), `"not_checked": []`) {
		t.Errorf("empty report: %s", buf.String())
	}
}

// finishAndJSON is the JSON of a report with nothing in it.
func (r *Report) finishAndJSON(w io.Writer) error {
	r.finish("")
	return r.WriteJSON(w)
}

func TestTable(t *testing.T) {
	e := newEnv(t)
	e.component("typo", "acme/shop-deplyo")
	r := e.run()
	var buf bytes.Buffer
	if err := r.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	lines := strings.Split(out, "\n")
	if !strings.HasPrefix(lines[0], "SEVERITY") || !strings.Contains(lines[0], "CHECK") || !strings.Contains(lines[0], "SUBJECT") || !strings.Contains(lines[0], "FINDING") {
		t.Errorf("header %q", lines[0])
	}
	i := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "error") && strings.Contains(l, "acme/shop-deplyo") })
	if i < 0 || i+1 >= len(lines) || !strings.Contains(lines[i+1], "fix: did you mean acme/shop-deploy?") {
		t.Errorf("no error row with its fix below:\n%s", out)
	}
	col := strings.Index(lines[0], "FINDING")
	if i >= 0 && strings.Index(lines[i+1], "fix:") != col {
		t.Errorf("the fix is not under the FINDING column:\n%s", out)
	}
	if !strings.Contains(out, "FAILED: 1 error, 3 warnings") {
		t.Errorf("no verdict:\n%s", out)
	}
	if !strings.Contains(out, "Checked 5 components, 6 pipelines in 1 organization, builds of the last 30d; 3 Buildkite API requests (at most 50).") {
		t.Errorf("no summary line:\n%s", out)
	}
}
