package buildkite_test

// Tests of the client against the fake Buildkite API in buildkite/buildkitetest: over real
// HTTP (httptest server) where timing does not matter, in process inside testing/synctest
// bubbles where it does.

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

const token = "bkua_fake_0123456789SECRETTOKEN"

var allScopes = []string{buildkite.ScopeReadBuilds, buildkite.ScopeReadPipelines}

// overHTTP starts f on a real socket and returns a client for it.
func overHTTP(t *testing.T, f *buildkitetest.Fake, cfg buildkite.Config) *buildkite.Client {
	t.Helper()
	cfg.BaseURL = f.Start()
	t.Cleanup(f.Close)
	return newClient(t, cfg)
}

// inProcess returns a client that reaches f without a socket, for synctest bubbles.
func inProcess(t *testing.T, f *buildkitetest.Fake, cfg buildkite.Config) *buildkite.Client {
	t.Helper()
	cfg.BaseURL = buildkitetest.InProcessBaseURL
	cfg.HTTPClient = &http.Client{Transport: f.Transport()}
	return newClient(t, cfg)
}

func newClient(t *testing.T, cfg buildkite.Config) *buildkite.Client {
	t.Helper()
	if cfg.Token == "" {
		cfg.Token = secret.Secret(token)
	}
	if cfg.RequestsPerMinute == 0 {
		cfg.RequestsPerMinute = math.Inf(1) // Buildkite's own limits still apply
	}
	c, err := buildkite.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func collect(t *testing.T, c *buildkite.Client, org, pipeline string, opts buildkite.ListBuildsOptions) ([]buildkite.Build, error) {
	t.Helper()
	var out []buildkite.Build
	visit := func(p []buildkite.Build) error { out = append(out, p...); return nil }
	var err error
	if pipeline == "" {
		err = c.ListOrganizationBuilds(context.Background(), org, opts, visit)
	} else {
		err = c.ListPipelineBuilds(context.Background(), org, pipeline, opts, visit)
	}
	return out, err
}

func statuses(reqs []buildkitetest.Request) []int {
	out := make([]int, 0, len(reqs))
	for _, r := range reqs {
		out = append(out, r.Status)
	}
	return out
}

// addMany adds n passed builds to org/pipeline, one a minute from start.
func addMany(f *buildkitetest.Fake, org, pipeline string, n int, start time.Time) {
	builds := make([]buildkite.Build, n)
	for i := range builds {
		at := start.Add(time.Duration(i) * time.Minute)
		builds[i] = buildkite.Build{
			Number: i + 1, State: buildkite.StatePassed, Branch: "main", Commit: fmt.Sprintf("%040x", i),
			CreatedAt: buildkite.Timestamp{Time: at}, StartedAt: buildkite.Timestamp{Time: at.Add(time.Second)},
			FinishedAt: buildkite.Timestamp{Time: at.Add(30 * time.Second)},
		}
	}
	f.AddBuilds(org, pipeline, builds)
}

func TestFakeManyPages(t *testing.T) {
	f := buildkitetest.New()
	f.SetToken(token, allScopes...)
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	addMany(f, "acme", "shop-deploy", 1234, start)
	addMany(f, "acme", "infra-deploy", 321, start.Add(30*time.Second))
	c := overHTTP(t, f, buildkite.Config{})

	builds, err := collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{ExcludeJobs: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(builds) != 1234 {
		t.Fatalf("%d builds, want 1234", len(builds))
	}
	for i, b := range builds {
		if b.Number != 1234-i || b.PipelineSlug() != "shop-deploy" {
			t.Fatalf("build %d is %s#%d, want shop-deploy#%d (newest first, no gaps)", i, b.PipelineSlug(), b.Number, 1234-i)
		}
	}
	reqs := f.Requests()
	if len(reqs) != 13 {
		t.Errorf("%d requests for 1234 builds, want 13 (100 a page)", len(reqs))
	}
	t.Logf("pipeline endpoint: %d requests for %d builds", len(reqs), len(builds))

	// The organization endpoint interleaves both pipelines, newest created first.
	f.ResetRequests()
	builds, err = collect(t, c, "acme", "", buildkite.ListBuildsOptions{ExcludeJobs: true, ExcludePipeline: true})
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for i, b := range builds {
		key := b.PipelineSlug() + "#" + fmt.Sprint(b.Number)
		if seen[key] {
			t.Fatalf("%s listed twice", key)
		}
		seen[key] = true
		if i > 0 && b.CreatedAt.After(builds[i-1].CreatedAt.Time) {
			t.Fatalf("build %d (%s) is newer than the one before it", i, key)
		}
	}
	if len(builds) != 1555 || len(f.Requests()) != 16 {
		t.Errorf("organization endpoint: %d builds in %d requests, want 1555 in 16", len(builds), len(f.Requests()))
	}
	t.Logf("organization endpoint: %d requests for %d builds", len(f.Requests()), len(builds))
	for _, r := range f.Requests() {
		if r.Status != http.StatusOK || r.Query.Get("per_page") != "100" {
			t.Errorf("request %s?%v answered %d", r.Path, r.Query, r.Status)
		}
	}
}

func TestFakeFilters(t *testing.T) {
	f := buildkitetest.New()
	f.SetToken(token, allScopes...)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	at := func(min int) buildkite.Timestamp {
		return buildkite.Timestamp{Time: t0.Add(time.Duration(min) * time.Minute)}
	}
	paused := false
	for _, b := range []buildkite.Build{
		{Number: 1, State: "passed", Branch: "main", Commit: strings.Repeat("a", 40), CreatedAt: at(0), FinishedAt: at(10),
			MetaData: map[string]string{"environment": "production"}},
		{Number: 2, State: "failed", Branch: "main", Commit: strings.Repeat("b", 40), CreatedAt: at(20), FinishedAt: at(25),
			MetaData: map[string]string{"environment": "staging"}},
		{Number: 3, State: "passed", Branch: "release/1.2", Commit: strings.Repeat("c", 40), CreatedAt: at(40), FinishedAt: at(70),
			MetaData: map[string]string{"environment": "production"}},
		{Number: 4, State: "running", Branch: "feature/x", Commit: strings.Repeat("a", 40), CreatedAt: at(60)},
		{Number: 5, State: "canceled", Branch: "main", Commit: strings.Repeat("d", 40), CreatedAt: at(80), FinishedAt: at(81),
			Creator: &buildkite.User{ID: "user-7", Name: "Dev"}},
	} {
		f.AddBuild("acme", "shop-deploy", b)
	}
	c := overHTTP(t, f, buildkite.Config{})
	for _, tc := range []struct {
		name string
		opts buildkite.ListBuildsOptions
		want []int
	}{
		{"none", buildkite.ListBuildsOptions{}, []int{5, 4, 3, 2, 1}},
		{"one state", buildkite.ListBuildsOptions{States: []string{"passed"}}, []int{3, 1}},
		{"two states", buildkite.ListBuildsOptions{States: []string{"failed", "canceled"}}, []int{5, 2}},
		{"finished shortcut", buildkite.ListBuildsOptions{States: []string{buildkite.StateFinished}}, []int{5, 3, 2, 1}},
		{"branch", buildkite.ListBuildsOptions{Branches: []string{"main"}}, []int{5, 2, 1}},
		{"branches with wildcard", buildkite.ListBuildsOptions{Branches: []string{"release/*", "feature/x"}}, []int{4, 3}},
		{"commit", buildkite.ListBuildsOptions{Commits: []string{strings.Repeat("a", 40)}}, []int{4, 1}},
		{"created from inclusive", buildkite.ListBuildsOptions{CreatedFrom: at(40).Time}, []int{5, 4, 3}},
		{"created to exclusive", buildkite.ListBuildsOptions{CreatedTo: at(40).Time}, []int{2, 1}},
		{"created window", buildkite.ListBuildsOptions{CreatedFrom: at(20).Time, CreatedTo: at(60).Time}, []int{3, 2}},
		{"finished from inclusive", buildkite.ListBuildsOptions{FinishedFrom: at(70).Time}, []int{5, 3}},
		{"meta data", buildkite.ListBuildsOptions{MetaData: map[string]string{"environment": "production"}}, []int{3, 1}},
		{"creator", buildkite.ListBuildsOptions{Creator: "user-7"}, []int{5}},
		{"include paused false", buildkite.ListBuildsOptions{IncludePaused: &paused, States: []string{"running"}}, []int{4}},
		{"combined", buildkite.ListBuildsOptions{Branches: []string{"main"}, States: []string{"passed", "failed"}, CreatedFrom: at(10).Time}, []int{2}},
		{"small pages", buildkite.ListBuildsOptions{PerPage: 2}, []int{5, 4, 3, 2, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			builds, err := collect(t, c, "acme", "shop-deploy", tc.opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []int
			for _, b := range builds {
				got = append(got, b.Number)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("builds (-want +got):\n%s", diff)
			}
		})
	}

	// exclude_jobs / exclude_pipeline reach the API: the pipeline object disappears, and the
	// slug is still known from the URL.
	builds, err := collect(t, c, "acme", "", buildkite.ListBuildsOptions{ExcludePipeline: true, ExcludeJobs: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range builds {
		if b.Pipeline != nil || b.PipelineSlug() != "shop-deploy" {
			t.Errorf("build #%d: pipeline=%v slug=%q, want no pipeline object and slug shop-deploy", b.Number, b.Pipeline, b.PipelineSlug())
		}
	}

	b, err := c.GetBuild(context.Background(), "acme", "shop-deploy", 5, buildkite.GetBuildOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if b.State != "canceled" || b.Creator == nil || b.Creator.ID != "user-7" || !b.FinishedAt.Equal(at(81).Time) {
		t.Errorf("GetBuild #5 = state %q creator %+v finished %v", b.State, b.Creator, b.FinishedAt)
	}
}

func TestFakeTimestampFormats(t *testing.T) {
	f := buildkitetest.New()
	f.SetToken(token, allScopes...)
	created := time.Date(2021, 3, 30, 13, 51, 46, 0, time.UTC)
	f.AddPipeline("acme", buildkite.Pipeline{Slug: "legacy", Name: "Legacy", CreatedAt: buildkite.Timestamp{Time: created}})
	f.AddPipeline("acme", buildkite.Pipeline{Slug: "modern", Name: "Modern", CreatedAt: buildkite.Timestamp{Time: created.Add(560 * time.Millisecond)}})
	if err := f.SetLegacyPipelineTimestamps("acme", "legacy", true); err != nil {
		t.Fatal(err)
	}
	c := overHTTP(t, f, buildkite.Config{})
	ctx := context.Background()

	legacy, err := c.GetPipeline(ctx, "acme", "legacy") // "2021-03-30 13:51:46 UTC"
	if err != nil {
		t.Fatal(err)
	}
	modern, err := c.GetPipeline(ctx, "acme", "modern") // "2021-03-30T13:51:46.560Z"
	if err != nil {
		t.Fatal(err)
	}
	if !legacy.CreatedAt.Equal(created) || !modern.CreatedAt.Equal(created.Add(560*time.Millisecond)) {
		t.Errorf("created_at: legacy %v, modern %v; want %v and .560 later", legacy.CreatedAt, modern.CreatedAt, created)
	}
	var slugs []string
	if err := c.ListPipelines(ctx, "acme", func(p []buildkite.Pipeline) error {
		for _, x := range p {
			slugs = append(slugs, x.Slug)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"legacy", "modern"}, slugs); diff != "" {
		t.Errorf("pipelines (-want +got):\n%s", diff)
	}
	tok, err := c.AccessToken(ctx) // created_at in the legacy format
	if err != nil {
		t.Fatal(err)
	}
	if tok.CreatedAt.IsZero() || !tok.HasScope(buildkite.ScopeReadBuilds) {
		t.Errorf("access token = %+v", tok)
	}
}

func TestFakeErrorMessages(t *testing.T) {
	f := buildkitetest.New()
	f.SetToken(token, allScopes...)
	f.SetToken("bkua_builds_only", buildkite.ScopeReadBuilds)
	f.AddPipeline("acme", buildkite.Pipeline{Slug: "shop-deploy"})
	f.Start()
	t.Cleanup(f.Close)
	ctx := context.Background()
	client := func(tok string) *buildkite.Client {
		return newClient(t, buildkite.Config{BaseURL: f.URL(), Token: secret.Secret(tok)})
	}
	for _, tc := range []struct {
		name  string
		call  func() error
		is    error
		texts []string
	}{
		{"401 unknown token", func() error {
			_, err := collect(t, client("bkua_revoked"), "acme", "", buildkite.ListBuildsOptions{})
			return err
		},
			buildkite.ErrUnauthorized, []string{"invalid, expired or revoked", "read_builds and read_pipelines"}},
		{"403 names the missing scope", func() error { _, err := client("bkua_builds_only").GetPipeline(ctx, "acme", "shop-deploy"); return err },
			buildkite.ErrForbidden, []string{"lacks the read_pipelines scope"}},
		{"404 organization", func() error {
			_, err := collect(t, client(token), "acme-typo", "", buildkite.ListBuildsOptions{})
			return err
		},
			buildkite.ErrNotFound, []string{`organization "acme-typo" is unknown or not visible to this token`}},
		{"404 pipeline", func() error {
			_, err := collect(t, client(token), "acme", "shop-typo", buildkite.ListBuildsOptions{})
			return err
		},
			buildkite.ErrNotFound, []string{`pipeline "acme/shop-typo" is unknown or not visible to this token`}},
		{"404 build", func() error {
			_, err := client(token).GetBuild(ctx, "acme", "shop-deploy", 99, buildkite.GetBuildOptions{})
			return err
		},
			buildkite.ErrNotFound, []string{"build acme/shop-deploy#99", "not visible to this token"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if !errors.Is(err, tc.is) {
				t.Fatalf("err = %v, want %v", err, tc.is)
			}
			for _, s := range tc.texts {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if strings.Contains(err.Error(), "bkua_") {
				t.Errorf("error %q contains a token", err)
			}
		})
	}
}

func TestFakeTooDeep(t *testing.T) {
	f := buildkitetest.New(buildkitetest.WithDeepPageLimit(2))
	f.SetToken(token, allScopes...)
	addMany(f, "acme", "shop-deploy", 250, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := overHTTP(t, f, buildkite.Config{})
	builds, err := collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{})
	if !errors.Is(err, buildkite.ErrTooDeep) || !strings.Contains(err.Error(), "narrow the query by time") {
		t.Fatalf("err = %v, want ErrTooDeep", err)
	}
	if len(builds) != 200 {
		t.Errorf("%d builds visited before the refusal, want 200", len(builds))
	}
}

func TestFakeOversizedBody(t *testing.T) {
	f := buildkitetest.New()
	f.SetToken(token, allScopes...)
	addMany(f, "acme", "shop-deploy", 100, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c := overHTTP(t, f, buildkite.Config{MaxBodyBytes: 4096})
	_, err := collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{})
	t.Log(err)
	if !errors.Is(err, buildkite.ErrBodyTooLarge) {
		t.Fatalf("err = %v, want ErrBodyTooLarge", err)
	}
	if n := len(f.Requests()); n != 1 {
		t.Errorf("%d requests, want 1 (an oversized answer is not retried)", n)
	}
}

func TestFakeServerErrorThenSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New()
		f.SetToken(token, allScopes...)
		addMany(f, "acme", "shop-deploy", 150, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		f.InjectFault(buildkitetest.Fault{Route: buildkitetest.RoutePipelineBuilds, Status: http.StatusBadGateway, Times: 2})
		c := inProcess(t, f, buildkite.Config{})
		builds, err := collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{})
		if err != nil || len(builds) != 150 {
			t.Fatalf("err=%v builds=%d, want 150 builds", err, len(builds))
		}
		if diff := cmp.Diff([]int{502, 502, 200, 200}, statuses(f.Requests())); diff != "" {
			t.Errorf("statuses (-want +got):\n%s", diff)
		}
	})
}

func TestFakeRetriesExhausted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New()
		f.SetToken(token, allScopes...)
		f.InjectFault(buildkitetest.Fault{Status: http.StatusServiceUnavailable, Times: 100})
		c := inProcess(t, f, buildkite.Config{MaxRetries: 3})
		_, err := c.GetPipeline(context.Background(), "acme", "shop-deploy")
		var apiErr *buildkite.APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("err = %v, want the 503", err)
		}
		if n := len(f.Requests()); n != 4 {
			t.Errorf("%d requests, want 4", n)
		}
	})
}

func TestFakeTruncatedJSON(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New()
		f.SetToken(token, allScopes...)
		addMany(f, "acme", "shop-deploy", 10, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		c := inProcess(t, f, buildkite.Config{})

		// A cut connection is transient: one retry and the listing is complete.
		f.InjectFault(buildkitetest.Fault{Truncate: true})
		builds, err := collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{})
		if err != nil || len(builds) != 10 {
			t.Fatalf("after one truncated answer: err=%v builds=%d, want 10 builds", err, len(builds))
		}

		// Always truncated: an error naming the endpoint, no panic, nothing visited.
		f.InjectFault(buildkitetest.Fault{Truncate: true, Times: 100})
		builds, err = collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{})
		if err == nil || !strings.Contains(err.Error(), "/v2/organizations/{org}/pipelines/{pipeline}/builds") {
			t.Fatalf("err = %v, want an error naming the endpoint", err)
		}
		if len(builds) != 0 {
			t.Errorf("%d builds visited from truncated answers", len(builds))
		}
	})
}

func TestFakeTruncatedJSONOverHTTP(t *testing.T) {
	f := buildkitetest.New()
	f.SetToken(token, allScopes...)
	addMany(f, "acme", "shop-deploy", 10, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	f.InjectFault(buildkitetest.Fault{Truncate: true, Times: 100})
	c := overHTTP(t, f, buildkite.Config{MaxRetries: -1})
	_, err := c.GetBuild(context.Background(), "acme", "shop-deploy", 3, buildkite.GetBuildOptions{})
	t.Log(err)
	if err == nil || !strings.Contains(err.Error(), "/v2/organizations/{org}/pipelines/{pipeline}/builds/{number}") {
		t.Fatalf("err = %v, want an error naming the endpoint", err)
	}
}

// stormAt advances the bubble's clock to second sec of a minute, then queues a 429 storm.
func stormAt(f *buildkitetest.Fake, sec int, scope string) {
	if d := time.Duration(sec)*time.Second - time.Duration(time.Now().Unix()%60)*time.Second; d > 0 {
		time.Sleep(d)
	}
	f.InjectFault(buildkitetest.Fault{RateLimitStorm: true, Scope: scope})
}

func TestFake429WaitsForTheScopesReset(t *testing.T) {
	for _, scope := range []string{"rest_user", "rest"} {
		t.Run(scope, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := buildkitetest.New()
				f.SetToken(token, allScopes...)
				addMany(f, "acme", "shop-deploy", 5, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
				reg := prometheus.NewPedanticRegistry()
				c := inProcess(t, f, buildkite.Config{Registerer: reg})
				stormAt(f, 45, scope) // the window resets in 15 s
				if _, err := collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{}); err != nil {
					t.Fatal(err)
				}
				reqs := f.Requests()
				if diff := cmp.Diff([]int{429, 200}, statuses(reqs)); diff != "" {
					t.Fatalf("statuses (-want +got):\n%s", diff)
				}
				if g := reqs[1].Time.Sub(reqs[0].Time); g < 15*time.Second || g > 16*time.Second {
					t.Errorf("retried %v after the 429, want 15 s (the %s reset) plus at most 1 s", g, scope)
				}
				want := fmt.Sprintf(`
# HELP buildkite_exporter_api_throttled_waits_total Times a request waited before being sent, by reason: scope="local" the exporter's own request rate, "rest" the organization's Buildkite budget, "rest_user" the token owner's Buildkite budget (nearly spent or answered 429).
# TYPE buildkite_exporter_api_throttled_waits_total counter
buildkite_exporter_api_throttled_waits_total{scope=%q} 1
`, scope)
				if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "buildkite_exporter_api_throttled_waits_total"); err != nil {
					t.Error(err)
				}
			})
		})
	}
}

func TestFakeNearlyExhaustedSlowsDownBeforeAny429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 10 requests a minute for this token; 2500 builds need 25 pages.
		f := buildkitetest.New(buildkitetest.WithUserLimit(10))
		f.SetToken(token, allScopes...)
		addMany(f, "acme", "shop-deploy", 2500, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		reg := prometheus.NewPedanticRegistry()
		c := inProcess(t, f, buildkite.Config{Registerer: reg})
		start := time.Now()
		builds, err := collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{})
		if err != nil || len(builds) != 2500 {
			t.Fatalf("err=%v builds=%d", err, len(builds))
		}
		for _, r := range f.Requests() {
			if r.Status != http.StatusOK {
				t.Fatalf("a request got %d; the client should have waited before the budget ran out", r.Status)
			}
		}
		perWindow := map[int64]int{}
		for _, r := range f.Requests() {
			perWindow[r.Time.Unix()/60]++
		}
		for w, n := range perWindow {
			if n > 10-2 {
				t.Errorf("window %d: %d requests, want at most 8 (limit 10, reserve 2)", w, n)
			}
		}
		elapsed := time.Since(start)
		if elapsed < 3*time.Minute || elapsed > 4*time.Minute {
			t.Errorf("25 pages at 10/min with a reserve of 2 took %v, want 3–4 minutes", elapsed)
		}
		t.Logf("%d requests in %v, %d windows", len(f.Requests()), elapsed, len(perWindow))
		if n := counterValue(t, reg, "buildkite_exporter_api_throttled_waits_total", "rest_user"); n < 3 {
			t.Errorf("throttled waits for rest_user = %v, want ≥ 3", n)
		}
	})
}

// counterValue reads a counter with a scope label from g (the vectors are unexported).
func counterValue(t *testing.T, g prometheus.Gatherer, name, scope string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "scope" && l.GetValue() == scope {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{scope=%q}", name, scope)
	return 0
}

func TestFakeCancelDuringRateLimitWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New()
		f.SetToken(token, allScopes...)
		c := inProcess(t, f, buildkite.Config{})
		stormAt(f, 5, "rest") // reset in 55 s
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() {
			_, err := c.GetPipeline(ctx, "acme", "shop-deploy")
			done <- err
		}()
		time.Sleep(20 * time.Second)
		cancel()
		err := <-done
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if n := len(f.Requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
}

func TestFakeTokenNeverLogged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New()
		f.SetToken(token, buildkite.ScopeReadBuilds)
		addMany(f, "acme", "shop-deploy", 3, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		logs := &testenv.LogBuffer{}
		logger := log.NewLogfmtLogger(logs) // no level filter: debug included
		c := inProcess(t, f, buildkite.Config{Logger: logger, MaxRetries: 3})
		ctx := context.Background()
		var errs []error
		f.InjectFault(buildkitetest.Fault{RateLimitStorm: true, Scope: "rest_user"})
		f.InjectFault(buildkitetest.Fault{Status: 500})
		f.InjectFault(buildkitetest.Fault{Truncate: true})
		_, err := collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{}) // 429, 500, truncated, ok
		errs = append(errs, err)
		f.InjectFault(buildkitetest.Fault{Status: 502, Times: 10})
		_, err = collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{})
		errs = append(errs, err)
		f.ClearFaults()
		_, err = c.GetPipeline(ctx, "acme", "shop-deploy") // 403
		errs = append(errs, err)
		tc := buildkite.NewTokenChecker(c, allScopes, logger, nil)
		runFor(tc, 30*time.Second)

		wrong := inProcess(t, f, buildkite.Config{Logger: logger, Token: secret.Secret(token + "-revoked")})
		_, err = wrong.AccessToken(ctx) // 401
		errs = append(errs, err)
		broken := newClient(t, buildkite.Config{Logger: logger, BaseURL: "http://127.0.0.1:1/v2/", MaxRetries: -1,
			HTTPClient: &http.Client{Transport: f.Transport()}}) // the in-process transport refuses other hosts
		_, err = broken.AccessToken(ctx)
		errs = append(errs, err)

		if errs[0] != nil {
			t.Errorf("429, 500, truncation then success: %v", errs[0])
		}
		for i, err := range errs[1:] {
			if err == nil {
				t.Errorf("call %d: want an error", i+1)
				continue
			}
			if strings.Contains(fmt.Sprintf("%v %+v %#v", err, err, err), token) {
				t.Errorf("error contains the token: %v", err)
			}
		}
		out := logs.String()
		if strings.Contains(out, token) || strings.Contains(out, "SECRETTOKEN") {
			t.Errorf("logs contain the token:\n%s", out)
		}
		for _, want := range []string{"Retrying Buildkite API request", "rate limit", "lacks required scopes", "level=debug"} {
			if !strings.Contains(out, want) {
				t.Errorf("logs lack %q (so the test would not see a leak there):\n%s", want, out)
			}
		}
	})
}

// runFor runs tc in the bubble for d, then stops it and waits for it to return.
func runFor(tc *buildkite.TokenChecker, d time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tc.Run(ctx); close(done) }()
	time.Sleep(d)
	cancel()
	<-done
}

func TestMetricsLint(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New()
		f.SetToken(token, allScopes...)
		addMany(f, "acme", "shop-deploy", 150, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		reg := prometheus.NewPedanticRegistry()
		c := inProcess(t, f, buildkite.Config{Registerer: reg, RequestsPerMinute: 60})
		f.InjectFault(buildkitetest.Fault{Status: 502})
		if _, err := collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{}); err != nil {
			t.Fatal(err)
		}
		_, _ = collect(t, c, "acme", "nope", buildkite.ListBuildsOptions{})
		tc := buildkite.NewTokenChecker(c, append(allScopes, "read_artifacts"), log.NewNopLogger(), reg)
		runFor(tc, 5*time.Second)

		problems, err := testutil.GatherAndLint(reg)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
		want := `
# HELP buildkite_exporter_api_requests_total Buildkite REST API requests by route template and HTTP status code ("error" when no answer arrived). Retries count separately.
# TYPE buildkite_exporter_api_requests_total counter
buildkite_exporter_api_requests_total{code="200",endpoint="/v2/access-token"} 1
buildkite_exporter_api_requests_total{code="200",endpoint="/v2/organizations/{org}/pipelines/{pipeline}/builds"} 2
buildkite_exporter_api_requests_total{code="404",endpoint="/v2/organizations/{org}/pipelines/{pipeline}/builds"} 1
buildkite_exporter_api_requests_total{code="502",endpoint="/v2/organizations/{org}/pipelines/{pipeline}/builds"} 1
# HELP buildkite_exporter_api_rate_limit_limit Requests allowed per Buildkite rate-limit window as of the latest answer; scope "rest" is the organization's budget, "rest_user" the token owner's.
# TYPE buildkite_exporter_api_rate_limit_limit gauge
buildkite_exporter_api_rate_limit_limit{scope="rest"} 200
buildkite_exporter_api_rate_limit_limit{scope="rest_user"} 50
# HELP buildkite_exporter_api_rate_limit_remaining Requests left in the current Buildkite rate-limit window as of the latest answer; scope "rest" is the organization's budget, "rest_user" the token owner's.
# TYPE buildkite_exporter_api_rate_limit_remaining gauge
buildkite_exporter_api_rate_limit_remaining{scope="rest"} 197
buildkite_exporter_api_rate_limit_remaining{scope="rest_user"} 46
# HELP buildkite_exporter_token_missing_scopes 1 when the Buildkite API token lacks a scope the exporter needs, 0 when it has it; from GET /v2/access-token, re-read every 10 minutes.
# TYPE buildkite_exporter_token_missing_scopes gauge
buildkite_exporter_token_missing_scopes{scope="read_artifacts"} 1
buildkite_exporter_token_missing_scopes{scope="read_builds"} 0
buildkite_exporter_token_missing_scopes{scope="read_pipelines"} 0
`
		if err := testutil.GatherAndCompare(reg, strings.NewReader(want),
			"buildkite_exporter_api_requests_total", "buildkite_exporter_api_rate_limit_limit",
			"buildkite_exporter_api_rate_limit_remaining", "buildkite_exporter_token_missing_scopes"); err != nil {
			t.Error(err)
		}
		if n, err := testutil.GatherAndCount(reg, "buildkite_exporter_api_request_duration_seconds"); err != nil || n != 2 {
			t.Errorf("duration histograms: %d (%v), want 2 endpoints", n, err)
		}
	})
}

func TestTokenCheckerMissingScopeThenFixed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New()
		f.SetToken(token, buildkite.ScopeReadBuilds) // read_pipelines missing
		c := inProcess(t, f, buildkite.Config{})
		reg := prometheus.NewPedanticRegistry()
		tc := buildkite.NewTokenChecker(c, allScopes, log.NewNopLogger(), reg)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		done := make(chan struct{})
		go func() { tc.Run(ctx); close(done) }()

		synctest.Wait()
		if tc.Ready() {
			t.Fatal("ready with a scope missing")
		}
		if diff := cmp.Diff([]string{"read_pipelines"}, tc.Missing()); diff != "" {
			t.Errorf("missing (-want +got):\n%s", diff)
		}
		gauge := func(readBuilds, readPipelines int) string {
			return fmt.Sprintf(`
# HELP buildkite_exporter_token_missing_scopes 1 when the Buildkite API token lacks a scope the exporter needs, 0 when it has it; from GET /v2/access-token, re-read every 10 minutes.
# TYPE buildkite_exporter_token_missing_scopes gauge
buildkite_exporter_token_missing_scopes{scope="read_builds"} %d
buildkite_exporter_token_missing_scopes{scope="read_pipelines"} %d
`, readBuilds, readPipelines)
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(gauge(0, 1)), "buildkite_exporter_token_missing_scopes"); err != nil {
			t.Error(err)
		}

		// It keeps retrying while the scope is missing, backing off.
		time.Sleep(5 * time.Minute)
		checks := len(f.Requests())
		if checks < 4 || checks > 10 {
			t.Errorf("%d checks in 5 minutes with a scope missing, want a few retries with backoff", checks)
		}

		// Someone fixes the token; the next retry notices.
		f.SetToken(token, allScopes...)
		time.Sleep(5 * time.Minute)
		synctest.Wait()
		if !tc.Ready() || len(tc.Missing()) != 0 {
			t.Fatalf("ready=%v missing=%v after the token was fixed", tc.Ready(), tc.Missing())
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(gauge(0, 0)), "buildkite_exporter_token_missing_scopes"); err != nil {
			t.Error(err)
		}

		// Revocation is noticed at the next periodic check (every 10 minutes).
		f.SetToken(token)
		time.Sleep(10*time.Minute + time.Second)
		synctest.Wait()
		if tc.Ready() {
			t.Error("still ready 10 minutes after the scopes were removed")
		}
		if err := testutil.GatherAndCompare(reg, strings.NewReader(gauge(1, 1)), "buildkite_exporter_token_missing_scopes"); err != nil {
			t.Error(err)
		}
		cancel()
		<-done
	})
}

func TestTokenCheckerRejectedTokenAndOutage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New()
		f.SetToken(token, allScopes...)
		c := inProcess(t, f, buildkite.Config{MaxRetries: -1})
		tc := buildkite.NewTokenChecker(c, allScopes, log.NewNopLogger(), nil)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { tc.Run(ctx); close(done) }()
		synctest.Wait()
		if !tc.Ready() {
			t.Fatal("not ready with all scopes")
		}
		// An API outage says nothing about the token: still ready.
		f.InjectFault(buildkitetest.Fault{Status: 503, Times: 3})
		time.Sleep(10*time.Minute + time.Second)
		synctest.Wait()
		if !tc.Ready() {
			t.Error("an outage made the token look bad")
		}
		// A 401 does: not ready, every scope missing.
		f2 := buildkitetest.New()
		c2 := inProcess(t, f2, buildkite.Config{})
		tc2 := buildkite.NewTokenChecker(c2, allScopes, log.NewNopLogger(), nil)
		runFor(tc2, time.Second)
		if tc2.Ready() || !slices.Equal(tc2.Missing(), allScopes) {
			t.Errorf("401: ready=%v missing=%v, want not ready and all missing", tc2.Ready(), tc2.Missing())
		}
		cancel()
		<-done
	})
}

// BenchmarkListPipelineBuilds pages through 10,000 builds (100 requests) of the in-process fake
// with rate limits off: the client's own cost per page (request, read, decode).
func BenchmarkListPipelineBuilds(b *testing.B) {
	f := buildkitetest.New(buildkitetest.WithRateLimits(false), buildkitetest.WithDeepPageLimit(0))
	f.SetToken(token, allScopes...)
	addMany(f, "acme", "shop-deploy", 10_000, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	c, err := buildkite.NewClient(buildkite.Config{
		BaseURL: buildkitetest.InProcessBaseURL, HTTPClient: &http.Client{Transport: f.Transport()},
		Token: secret.Secret(token), RequestsPerMinute: math.Inf(1),
	})
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for b.Loop() {
		n = 0
		err := c.ListPipelineBuilds(context.Background(), "acme", "shop-deploy", buildkite.ListBuildsOptions{ExcludeJobs: true},
			func(p []buildkite.Build) error { n += len(p); return nil })
		if err != nil {
			b.Fatal(err)
		}
	}
	if n != 10_000 {
		b.Fatalf("%d builds, want 10000", n)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/10_000, "ns/build")
}
