package backstage_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/go-kit/log"
	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage/backstagetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
)

const testToken = "s3cret-backstage-token"

func newAPISource(t testing.TB, url string, token secret.Secret, client *http.Client) *backstage.APISource {
	t.Helper()
	s, err := backstage.NewAPISource(url, token, client, log.NewNopLogger())
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestAPISourcePaginationAndFilter(t *testing.T) {
	fake := backstagetest.New(testToken)
	var entities []map[string]any
	const annotated = 450 // more than two pages of the source's page size
	for i := range annotated {
		key := backstage.Annotations[i%len(backstage.Annotations)] // all three keys are asked for
		entities = append(entities, backstagetest.Entity("", fmt.Sprintf("svc-%03d", i), "team", map[string]string{key: fmt.Sprintf("acme/svc-%03d", i)}))
	}
	for i := range 30 {
		entities = append(entities, backstagetest.Entity("", fmt.Sprintf("plain-%02d", i), "team", nil))
	}
	// Filtered out by the catalog: an annotation this exporter does not ask for.
	entities = append(entities, backstagetest.Entity("", "other", "team", map[string]string{"github.com/project-slug": "acme/other"}))
	fake.SetEntities(entities...)
	srv := httptest.NewServer(fake)
	defer srv.Close()

	res, err := newAPISource(t, srv.URL, testToken, srv.Client()).Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	merged := backstage.Merge(res)
	if len(merged.Components) != annotated || len(res.Problems) != 0 {
		t.Fatalf("got %d components and problems %v, want %d and none", len(merged.Components), res.Problems, annotated)
	}
	want := backstage.Component{Name: "svc-007", Namespace: "default", Label: "svc-007", Ref: "component:default/svc-007",
		Owner: "team", System: "shop", Lifecycle: "production", Type: "service",
		Pipelines: []backstage.PipelineRef{{"acme", "svc-007"}}, Source: srv.URL + "/api/catalog"}
	if diff := cmp.Diff(want, merged.Components[7]); diff != "" {
		t.Errorf("component (-want +got):\n%s", diff)
	}

	reqs := fake.Requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 pages", len(reqs))
	}
	wantFilters := []string{
		"metadata.annotations.buildkite.com/pipeline-slug",
		"metadata.annotations.buildkite.com/project-slug",
		"metadata.annotations.buildkite.com/pipeline",
	}
	if got := reqs[0]["filter"]; !slices.Equal(got, wantFilters) {
		t.Errorf("first request filters = %v, want %v", got, wantFilters)
	}
	for i, q := range reqs {
		if q.Get("limit") == "" || !strings.Contains(q.Get("fields"), "metadata.annotations") {
			t.Errorf("request %d = %v: want limit and fields", i, q)
		}
		if i > 0 && (q.Get("cursor") == "" || q.Has("filter")) {
			t.Errorf("request %d = %v: want a cursor and no filter", i, q)
		}
	}
}

func TestAPISourceAuthentication(t *testing.T) {
	fake := backstagetest.New(testToken)
	fake.SetEntities(backstagetest.Entity("", "shop", "team", map[string]string{backstage.AnnotationPipelineSlug: "acme/shop"}))
	srv := httptest.NewServer(fake)
	defer srv.Close()

	for _, tc := range []struct {
		name  string
		token secret.Secret
		want  string
	}{
		{"no token", "", "BACKSTAGE_TOKEN"},
		{"wrong token", "not-" + testToken, "token was refused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, err := newAPISource(t, srv.URL, tc.token, srv.Client()).Load(context.Background())
			if err == nil {
				t.Fatal("Load succeeded without a valid token")
			}
			if !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q should say 401 and %q", err, tc.want)
			}
			if len(res.Components) != 0 || len(res.Problems) != 1 || res.Problems[0].Reason != backstage.ReasonBackstageAPI {
				t.Errorf("result = %+v, want one backstage_api problem", res)
			}
			if strings.Contains(fmt.Sprint(err, res), testToken) {
				t.Error("the token leaked into the error or the result")
			}
		})
	}
}

func TestAPISourceFailures(t *testing.T) {
	fake := backstagetest.New("")
	fake.Fail(http.StatusServiceUnavailable)
	srv := httptest.NewServer(fake)
	defer srv.Close()
	_, err := newAPISource(t, srv.URL, "", srv.Client()).Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("5xx: err = %v, want a 503 error", err)
	}

	html := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "<html>the frontend, not the backend</html>")
	}))
	defer html.Close()
	_, err = newAPISource(t, html.URL, "", html.Client()).Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "backend's URL") {
		t.Errorf("HTML body: err = %v, want advice about the URL", err)
	}

	loop := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{"items":[{"kind":"Component"}],"pageInfo":{"nextCursor":"same"}}`)
	}))
	defer loop.Close()
	_, err = newAPISource(t, loop.URL, "", loop.Client()).Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "had returned before") {
		t.Errorf("cursor loop: err = %v, want it detected", err)
	}

	srv.Close() // unreachable
	_, err = newAPISource(t, srv.URL, "", nil).Load(context.Background())
	if err == nil || !strings.Contains(err.Error(), "cannot reach") {
		t.Errorf("unreachable: err = %v", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := newAPISource(t, html.URL, "", nil).Load(ctx); err == nil {
		t.Error("Load with a cancelled context succeeded")
	}
}

func TestNewAPISourceURL(t *testing.T) {
	fake := backstagetest.New("")
	srv := httptest.NewServer(fake)
	defer srv.Close()
	for _, base := range []string{srv.URL, srv.URL + "/", srv.URL + "/api/catalog", srv.URL + "/api/catalog/"} {
		if _, err := newAPISource(t, base, "", srv.Client()).Load(context.Background()); err != nil {
			t.Errorf("%s: %v", base, err)
		}
	}
	for _, bad := range []string{"", "backstage.example.com", "ftp://backstage.example.com", "https://user:pw@backstage.example.com"} {
		_, err := backstage.NewAPISource(bad, "", nil, log.NewNopLogger())
		if err == nil {
			t.Errorf("NewAPISource(%q) succeeded", bad)
		} else if strings.Contains(err.Error(), "pw") {
			t.Errorf("NewAPISource(%q) error repeats the password: %v", bad, err)
		}
	}
}
