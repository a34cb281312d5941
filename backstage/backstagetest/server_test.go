package backstagetest_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage/backstagetest"
)

type page struct {
	Items      []map[string]any `json:"items"`
	TotalItems int              `json:"totalItems"`
	PageInfo   struct {
		NextCursor string `json:"nextCursor"`
	} `json:"pageInfo"`
}

func get(t *testing.T, h http.Handler, token string, q url.Values) (int, page) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/api/catalog/entities/by-query?"+q.Encode(), nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	var p page
	if rec.Code == http.StatusOK {
		if err := json.Unmarshal(rec.Body.Bytes(), &p); err != nil {
			t.Fatal(err)
		}
	}
	return rec.Code, p
}

func TestServer(t *testing.T) {
	s := backstagetest.New("tok")
	var es []map[string]any
	for _, n := range []string{"c", "a", "b"} {
		es = append(es, backstagetest.Entity("", n, "team-"+n, map[string]string{"buildkite.com/pipeline-slug": "acme/" + n}))
	}
	es = append(es, backstagetest.Entity("", "plain", "team", nil))
	s.SetEntities(es...)

	if code, _ := get(t, s, "", nil); code != http.StatusUnauthorized {
		t.Errorf("no token: %d, want 401", code)
	}

	// Exists filter, sorted by ref, limit and cursor; the cursor keeps the filter.
	q := url.Values{"filter": {"metadata.annotations.buildkite.com/pipeline-slug"}, "limit": {"2"}}
	code, p := get(t, s, "tok", q)
	if code != http.StatusOK || p.TotalItems != 3 || len(p.Items) != 2 || p.PageInfo.NextCursor == "" {
		t.Fatalf("first page: %d %+v", code, p)
	}
	_, p2 := get(t, s, "tok", url.Values{"cursor": {p.PageInfo.NextCursor}, "limit": {"2"}})
	var names []string
	for _, it := range append(p.Items, p2.Items...) {
		names = append(names, it["metadata"].(map[string]any)["name"].(string))
	}
	if diff := cmp.Diff([]string{"a", "b", "c"}, names); diff != "" || p2.PageInfo.NextCursor != "" {
		t.Errorf("pages (-want +got):\n%s (next %q)", diff, p2.PageInfo.NextCursor)
	}

	// key=value filters (case-insensitive), OR across filter parameters, fields projection
	// keeping annotation keys with dots.
	q = url.Values{"filter": {"spec.owner=TEAM-A", "metadata.name=c"}, "fields": {"metadata.annotations,spec.owner"}}
	_, p = get(t, s, "tok", q)
	want := []map[string]any{
		{"metadata": map[string]any{"annotations": map[string]any{"buildkite.com/pipeline-slug": "acme/a"}}, "spec": map[string]any{"owner": "team-a"}},
		{"metadata": map[string]any{"annotations": map[string]any{"buildkite.com/pipeline-slug": "acme/c"}}, "spec": map[string]any{"owner": "team-c"}},
	}
	if diff := cmp.Diff(want, p.Items); diff != "" {
		t.Errorf("filtered, projected items (-want +got):\n%s", diff)
	}

	s.Fail(http.StatusBadGateway)
	if code, _ := get(t, s, "tok", nil); code != http.StatusBadGateway {
		t.Errorf("Fail(502): got %d", code)
	}
	if n := len(s.Requests()); n != 5 {
		t.Errorf("%d requests recorded, want 5", n)
	}
}
