package buildkite

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

func TestNewClientValidatesConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr string // "" = valid
		wantURL string
	}{
		{name: "defaults", cfg: Config{Token: "t"}, wantURL: DefaultBaseURL},
		{name: "missing trailing slash", cfg: Config{Token: "t", BaseURL: "http://fake:8080/prefix/v2"}, wantURL: "http://fake:8080/prefix/v2/"},
		{name: "no token", cfg: Config{}, wantErr: "no API token"},
		{name: "token with newline", cfg: Config{Token: "abc\n"}, wantErr: "white space"},
		{name: "not v2", cfg: Config{Token: "t", BaseURL: "https://api.buildkite.com/"}, wantErr: "must end in /v2/"},
		{name: "no scheme", cfg: Config{Token: "t", BaseURL: "api.buildkite.com/v2/"}, wantErr: "not an http(s) URL"},
		{name: "credentials in URL", cfg: Config{Token: "t", BaseURL: "https://u:p@api.buildkite.com/v2/"}, wantErr: "credentials"},
		{name: "negative rate", cfg: Config{Token: "t", RequestsPerMinute: -1}, wantErr: "must be positive"},
		{name: "NaN rate", cfg: Config{Token: "t", RequestsPerMinute: math.NaN()}, wantErr: "must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := NewClient(tc.cfg)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("NewClient error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewClient: %v", err)
			}
			if got := c.base.String(); got != tc.wantURL {
				t.Errorf("base URL = %q, want %q", got, tc.wantURL)
			}
			if c.maxRetries != defaultMaxRetries || c.maxBody != defaultMaxBodyBytes {
				t.Errorf("defaults: maxRetries=%d maxBody=%d", c.maxRetries, c.maxBody)
			}
			if got, want := float64(c.limiter.Limit()), float64(DefaultRequestsPerMinute)/60; got != want {
				t.Errorf("limiter rate = %v/s, want %v/s", got, want)
			}
		})
	}
}

func TestQueryEncoding(t *testing.T) {
	paused := false
	from := time.Date(2026, 1, 8, 23, 22, 5, 987_000_000, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name string
		opts ListBuildsOptions
		want string
	}{
		{name: "zero", want: "per_page=100"},
		{name: "per page kept", opts: ListBuildsOptions{PerPage: 30}, want: "per_page=30"},
		{name: "per page capped", opts: ListBuildsOptions{PerPage: 500}, want: "per_page=100"},
		{name: "states", opts: ListBuildsOptions{States: []string{StatePassed, StateFailed}},
			want: "state[]=passed&state[]=failed&per_page=100"},
		{name: "branches with wildcard", opts: ListBuildsOptions{Branches: []string{"main", "release/*"}},
			want: "branch[]=main&branch[]=release%2F%2A&per_page=100"},
		{name: "commits", opts: ListBuildsOptions{Commits: []string{"0a3285898e369d5a7f96e0c33945c2a515737b48"}},
			want: "commit[]=0a3285898e369d5a7f96e0c33945c2a515737b48&per_page=100"},
		{name: "times in UTC, whole seconds", opts: ListBuildsOptions{CreatedFrom: from, CreatedTo: from.Add(time.Hour), FinishedFrom: from},
			want: "created_from=2026-01-08T22%3A22%3A05Z&created_to=2026-01-08T23%3A22%3A05Z&finished_from=2026-01-08T22%3A22%3A05Z&per_page=100"},
		{name: "meta data sorted and escaped", opts: ListBuildsOptions{MetaData: map[string]string{"environment": "production", "app:env": "a b"}},
			want: "meta_data[app%3Aenv]=a+b&meta_data[environment]=production&per_page=100"},
		{name: "bools only when true", opts: ListBuildsOptions{ExcludeJobs: true, ExcludePipeline: true, IncludeRetriedJobs: false},
			want: "exclude_jobs=true&exclude_pipeline=true&per_page=100"},
		{name: "include paused false is sent", opts: ListBuildsOptions{IncludePaused: &paused, Creator: "u-1"},
			want: "creator=u-1&include_paused=false&per_page=100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &script{answers: []answer{{body: "[]"}}}
			c := newTestClient(t, s, Config{})
			if err := c.ListOrganizationBuilds(context.Background(), "acme", tc.opts, func([]Build) error { return nil }); err != nil {
				t.Fatal(err)
			}
			reqs := s.requests()
			if len(reqs) != 1 {
				t.Fatalf("%d requests, want 1", len(reqs))
			}
			if reqs[0].rawQuery != tc.want {
				t.Errorf("query\n got %s\nwant %s", reqs[0].rawQuery, tc.want)
			}
			if reqs[0].path != "/v2/organizations/acme/builds" {
				t.Errorf("path = %s", reqs[0].path)
			}
		})
	}
}

func TestRequestPathsAndHeaders(t *testing.T) {
	s := &script{answers: []answer{{body: `{"slug":"shop-deploy","number":7}`}}}
	c := newTestClient(t, s, Config{UserAgent: "buildkite_deployments_exporter/test", BaseURL: "http://buildkite.test/prefix/v2"})
	ctx := context.Background()
	if _, err := c.GetBuild(ctx, "acme", "shop-deploy", 7, GetBuildOptions{IncludeRetriedJobs: true, JobStates: []string{"blocked", "unblocked"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.GetPipeline(ctx, "acme", "shop-deploy"); err != nil {
		t.Fatal(err)
	}
	_ = c.ListPipelineBuilds(ctx, "acme", "shop-deploy", ListBuildsOptions{}, func([]Build) error { return nil })
	_ = c.ListPipelines(ctx, "acme", func([]Pipeline) error { return nil })
	_, _ = c.AccessToken(ctx)
	var got []string
	for _, r := range s.requests() {
		got = append(got, r.path+"?"+r.rawQuery)
		if r.auth != "Bearer "+testToken {
			t.Errorf("Authorization = %q", r.auth)
		}
		if r.userAgent != "buildkite_deployments_exporter/test" {
			t.Errorf("User-Agent = %q", r.userAgent)
		}
	}
	want := []string{
		"/prefix/v2/organizations/acme/pipelines/shop-deploy/builds/7?include_retried_jobs=true&job_states[]=blocked&job_states[]=unblocked",
		"/prefix/v2/organizations/acme/pipelines/shop-deploy?",
		"/prefix/v2/organizations/acme/pipelines/shop-deploy/builds?per_page=100",
		"/prefix/v2/organizations/acme/pipelines?per_page=100",
		"/prefix/v2/access-token?",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}

func TestBadSlugsAreRejectedBeforeAnyRequest(t *testing.T) {
	s := &script{answers: []answer{{body: "[]"}}}
	c := newTestClient(t, s, Config{})
	ctx := context.Background()
	for _, err := range []error{
		c.ListOrganizationBuilds(ctx, "", ListBuildsOptions{}, nil),
		c.ListPipelineBuilds(ctx, "acme", "../x", ListBuildsOptions{}, nil),
		func() error { _, err := c.GetBuild(ctx, "acme", "p", 0, GetBuildOptions{}); return err }(),
		func() error { _, err := c.GetPipeline(ctx, "acme/evil", "p"); return err }(),
	} {
		if err == nil {
			t.Error("want an error for a bad slug or number")
		}
	}
	if n := len(s.requests()); n != 0 {
		t.Errorf("%d requests sent, want 0", n)
	}
}

// pagedHandler serves n builds newest first in pages, with absolute Link headers like the API.
func pagedHandler(t *testing.T, base func() string, n int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		page, per := 1, 30
		fmt.Sscan(q.Get("page"), &page)
		fmt.Sscan(q.Get("per_page"), &per)
		var builds []string
		for i := n - (page-1)*per; i > max(0, n-page*per); i-- {
			builds = append(builds, fmt.Sprintf(`{"id":"b%d","number":%d,"state":"passed"}`, i, i))
		}
		if page*per < n {
			q.Set("page", fmt.Sprint(page+1))
			w.Header().Add("Link", fmt.Sprintf(`<%s%s?%s>; rel="next", <%s%s?page=99>; rel="last"`,
				base(), strings.TrimPrefix(r.URL.Path, "/v2/"), q.Encode(), base(), strings.TrimPrefix(r.URL.Path, "/v2/")))
		}
		fmt.Fprintf(w, "[%s]", strings.Join(builds, ","))
	})
}

func TestPaginationFollowsNextLinks(t *testing.T) {
	var srv *httptest.Server
	srv = httptest.NewServer(pagedHandler(t, func() string { return srv.URL + "/v2/" }, 250))
	defer srv.Close()
	c := newTestClient(t, nil, Config{BaseURL: srv.URL + "/v2/", HTTPClient: srv.Client()})

	var numbers []int
	pages := 0
	err := c.ListPipelineBuilds(context.Background(), "acme", "shop", ListBuildsOptions{}, func(p []Build) error {
		pages++
		for _, b := range p {
			numbers = append(numbers, b.Number)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if pages != 3 || len(numbers) != 250 {
		t.Fatalf("got %d pages, %d builds; want 3 pages, 250 builds", pages, len(numbers))
	}
	for i, n := range numbers {
		if n != 250-i {
			t.Fatalf("build %d has number %d, want %d (order lost)", i, n, 250-i)
		}
	}

	// ErrStopPaging ends early without error.
	pages = 0
	err = c.ListPipelineBuilds(context.Background(), "acme", "shop", ListBuildsOptions{}, func(p []Build) error {
		pages++
		return ErrStopPaging
	})
	if err != nil || pages != 1 {
		t.Errorf("stop paging: err=%v pages=%d, want nil and 1", err, pages)
	}
	// Any other error from visit is returned as is.
	boom := errors.New("boom")
	err = c.ListPipelineBuilds(context.Background(), "acme", "shop", ListBuildsOptions{}, func(p []Build) error { return boom })
	if !errors.Is(err, boom) {
		t.Errorf("visit error = %v, want boom", err)
	}
}

func TestPaginationRefusesForeignHost(t *testing.T) {
	foreign := &script{answers: []answer{{body: "[]"}}}
	other := httptest.NewServer(foreign)
	defer other.Close()
	s := &script{answers: []answer{{body: "[]", header: map[string]string{"Link": "<" + other.URL + "/v2/organizations/acme/builds?page=2>; rel=\"next\""}}}}
	srv := httptest.NewServer(s)
	defer srv.Close()
	c := newTestClient(t, nil, Config{BaseURL: srv.URL + "/v2/", HTTPClient: srv.Client()})
	err := c.ListOrganizationBuilds(context.Background(), "acme", ListBuildsOptions{}, func([]Build) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "refusing to follow") {
		t.Fatalf("err = %v, want a refusal", err)
	}
	if n := len(foreign.requests()); n != 0 {
		t.Errorf("the foreign host got %d requests (with the token)", n)
	}
}

func TestPaginationStopsOnLinkLoop(t *testing.T) {
	s := &script{answers: []answer{{body: "[]", header: map[string]string{"Link": `<http://buildkite.test/v2/organizations/acme/builds?per_page=100>; rel="next"`}}}}
	c := newTestClient(t, s, Config{})
	err := c.ListOrganizationBuilds(context.Background(), "acme", ListBuildsOptions{}, func([]Build) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "already read") {
		t.Fatalf("err = %v, want a loop error", err)
	}
	if n := len(s.requests()); n != 1 {
		t.Errorf("%d requests, want 1", n)
	}
}

func TestFindRel(t *testing.T) {
	for _, tc := range []struct {
		values []string
		want   string
	}{
		{nil, ""},
		{[]string{`<https://a/v2/x?page=2>; rel="next", <https://a/v2/x?page=6>; rel="last"`}, "https://a/v2/x?page=2"},
		{[]string{`<https://a/v2/x?page=1>; rel="prev", <https://a/v2/x?page=3>; rel="next"`}, "https://a/v2/x?page=3"},
		{[]string{`<https://a/v2/x?page=1>; rel="first"`, `<https://a/v2/x?page=3>;rel=next`}, "https://a/v2/x?page=3"},
		{[]string{`<https://a/v2/x?branch=a,b&page=3>; rel="prev next"`}, "https://a/v2/x?branch=a,b&page=3"},
		{[]string{`<https://a/v2/x?page=6>; rel="last"`}, ""},
		{[]string{`garbage <unterminated`}, ""},
	} {
		if got := findRel(tc.values, "next"); got != tc.want {
			t.Errorf("findRel(%q) = %q, want %q", tc.values, got, tc.want)
		}
	}
}

func TestErrorAnswers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int
		body     string
		call     func(*Client) error
		is       error
		contains []string
	}{
		{
			name: "401", status: 401,
			body: `{"message":"Authentication required. Please supply a valid API Access Token: https://buildkite.com/docs/apis/rest-api#authentication"}`,
			call: listOrg, is: ErrUnauthorized,
			contains: []string{"invalid, expired or revoked", "api-access-tokens", "read_builds", "/v2/organizations/{org}/builds"},
		},
		{
			name: "403 names scope", status: 403, body: `{"message":"Your access token doesn't have the read_builds scope"}`,
			call: listOrg, is: ErrForbidden, contains: []string{"lacks the read_builds scope"},
		},
		{
			name: "403 plain", status: 403, body: `{"message":"Forbidden"}`,
			call: listOrg, is: ErrForbidden, contains: []string{`organization "acme"`, "organization access"},
		},
		{
			name: "404 organization", status: 404, body: `{"message":"No organization found"}`,
			call: listOrg, is: ErrNotFound, contains: []string{`organization "acme" is unknown or not visible to this token`, "No organization found"},
		},
		{
			name: "404 pipeline", status: 404, body: `{"message":"No pipeline found"}`,
			call: func(c *Client) error { _, err := c.GetPipeline(context.Background(), "acme", "shop"); return err },
			is:   ErrNotFound, contains: []string{`organization "acme" or pipeline "acme/shop" is unknown or not visible to this token`},
		},
		{
			name: "400 too deep", status: 400,
			body: `{"message": "Listing builds this deep is not supported. Please narrow your query using filters such as branch or created_from."}`,
			call: listOrg, is: ErrTooDeep, contains: []string{"narrow the query by time"},
		},
		{
			name: "422 other", status: 422, body: `{"message":"Validation Failed","errors":[]}`,
			call: listOrg, contains: []string{"HTTP 422", "Validation Failed"},
		},
		{
			name: "HTML error page", status: 418, body: "<html><body>" + strings.Repeat("teapot ", 100) + "</body></html>",
			call: listOrg, contains: []string{"HTTP 418", "…"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &script{answers: []answer{{status: tc.status, body: tc.body}}}
			c := newTestClient(t, s, Config{})
			err := tc.call(c)
			if err == nil {
				t.Fatal("no error")
			}
			var apiErr *APIError
			if !errors.As(err, &apiErr) || apiErr.StatusCode != tc.status {
				t.Fatalf("err = %#v, want *APIError with status %d", err, tc.status)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("errors.Is(%v, %v) = false", err, tc.is)
			}
			for _, other := range []error{ErrUnauthorized, ErrForbidden, ErrNotFound, ErrTooDeep, ErrRateLimited} {
				if other != tc.is && errors.Is(err, other) {
					t.Errorf("error also matches %v", other)
				}
			}
			for _, want := range tc.contains {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			assertNoToken(t, "error", err.Error())
			if n := len(s.requests()); n != 1 {
				t.Errorf("%d requests, want 1 (4xx are not retried)", n)
			}
		})
	}
}

func listOrg(c *Client) error { return listOrgCtx(context.Background(), c) }

func listOrgCtx(ctx context.Context, c *Client) error {
	return c.ListOrganizationBuilds(ctx, "acme", ListBuildsOptions{}, func([]Build) error { return nil })
}

func TestMalformedAnswers(t *testing.T) {
	for _, tc := range []struct {
		name     string
		body     string
		call     func(*Client) error
		contains string
	}{
		{"truncated list", `[{"id":"b1","number":1},{"id":"b2","num`, listOrg, "/v2/organizations/{org}/builds"},
		{"object instead of list", `{"message":"hi"}`, listOrg, "/v2/organizations/{org}/builds"},
		{"truncated build", `{"id":"b1","created_at":"2026-01-`, func(c *Client) error {
			_, err := c.GetBuild(context.Background(), "acme", "p", 1, GetBuildOptions{})
			return err
		}, "/v2/organizations/{org}/pipelines/{pipeline}/builds/{number}"},
		{"bad timestamp", `{"uuid":"u","scopes":[],"created_at":"yesterday"}`, func(c *Client) error {
			_, err := c.AccessToken(context.Background())
			return err
		}, "/v2/access-token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &script{answers: []answer{{body: tc.body}}}
			c := newTestClient(t, s, Config{})
			err := tc.call(c)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want *DecodeError", err)
			}
			if !strings.Contains(err.Error(), tc.contains) {
				t.Errorf("error %q does not name the endpoint %q", err, tc.contains)
			}
		})
	}
}

func TestOversizedBody(t *testing.T) {
	big := "[" + strings.Repeat(`{"id":"x"},`, 200) + `{"id":"y"}]`
	for _, tc := range []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"content-length announced", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			_, _ = w.Write([]byte(big))
		}},
		{"chunked", func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i < len(big); i += 100 {
				_, _ = w.Write([]byte(big[i:min(i+100, len(big))]))
				w.(http.Flusher).Flush()
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(tc.handler)
			defer srv.Close()
			c := newTestClient(t, nil, Config{BaseURL: srv.URL + "/v2/", HTTPClient: srv.Client(), MaxBodyBytes: 1000})
			err := listOrg(c)
			if !errors.Is(err, ErrBodyTooLarge) || !strings.Contains(err.Error(), "1000 bytes") {
				t.Fatalf("err = %v, want ErrBodyTooLarge naming the limit", err)
			}
		})
	}
	// Just under the limit is fine.
	s := &script{answers: []answer{{body: big}}}
	c := newTestClient(t, s, Config{MaxBodyBytes: int64(len(big))})
	if err := listOrg(c); err != nil {
		t.Errorf("body of exactly the limit: %v", err)
	}
}

func TestTimestampFormats(t *testing.T) {
	s := &script{answers: []answer{{body: `{"uuid":"tok-1","scopes":["read_builds","read_pipelines"],` +
		`"created_at":"2025-07-16 06:07:42 UTC","expires_at":"2026-03-30T13:51:46.560Z","user":{"name":"Bot","email":"bot@example.com"}}`}}}
	c := newTestClient(t, s, Config{})
	tok, err := c.AccessToken(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if want := time.Date(2025, 7, 16, 6, 7, 42, 0, time.UTC); !tok.CreatedAt.Equal(want) {
		t.Errorf("created_at = %v, want %v", tok.CreatedAt, want)
	}
	if want := time.Date(2026, 3, 30, 13, 51, 46, 560_000_000, time.UTC); !tok.ExpiresAt.Equal(want) {
		t.Errorf("expires_at = %v, want %v", tok.ExpiresAt, want)
	}
	if !tok.HasScope(ScopeReadPipelines) || tok.HasScope("write_builds") {
		t.Errorf("scopes = %v", tok.Scopes)
	}
}

func TestTransportErrorHidesToken(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // connection refused from now on
	logs := &testenv.LogBuffer{}
	c := newTestClient(t, nil, Config{BaseURL: url + "/v2/", HTTPClient: &http.Client{}, MaxRetries: -1, Logger: newLogfmt(logs)})
	err := listOrg(c)
	var te *TransportError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want *TransportError", err)
	}
	if !strings.Contains(err.Error(), "/v2/organizations/{org}/builds") {
		t.Errorf("error %q does not name the endpoint", err)
	}
	assertNoToken(t, "error", err.Error())
	assertNoToken(t, "error (%+v)", fmt.Sprintf("%+v %#v", err, err))
	assertNoToken(t, "logs", logs.String())
}

// echoTransport fails with an error that quotes the request's headers, as a careless proxy
// library might; the client must scrub it.
type echoTransport struct{}

func (echoTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	return nil, fmt.Errorf("proxy refused request with headers %v", r.Header)
}

func TestTransportErrorScrubsEchoedToken(t *testing.T) {
	c := newTestClient(t, nil, Config{HTTPClient: &http.Client{Transport: echoTransport{}}, MaxRetries: -1})
	err := listOrg(c)
	if err == nil {
		t.Fatal("no error")
	}
	assertNoToken(t, "error", err.Error())
	if !strings.Contains(err.Error(), "<secret>") {
		t.Errorf("error %q: want the token replaced by <secret>", err)
	}
}

func TestSecretTypeStaysHidden(t *testing.T) {
	c := newTestClient(t, &script{answers: []answer{{}}}, Config{Token: secret.Secret(testToken)})
	assertNoToken(t, "client %+v", fmt.Sprintf("%+v %v", c, c))
}
