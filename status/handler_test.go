package status

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func fixtureHandler(src Source) http.Handler {
	return NewHandler(src, Options{Now: func() time.Time { return fixtureNow }, Version: "0.2.0"})
}

// get serves target and returns the response and its body.
func get(t *testing.T, h http.Handler, method, target string) (*http.Response, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(method, target, nil))
	res := rec.Result()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func getPage(t *testing.T, h http.Handler, query string) *Page {
	t.Helper()
	res, body := get(t, h, http.MethodGet, "/status?format=json&"+query)
	if res.StatusCode != http.StatusOK {
		t.Fatalf("%s: status %d: %s", query, res.StatusCode, body)
	}
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields() // every field the handler writes is one of the schema
	var p Page
	if err := dec.Decode(&p); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return &p
}

func TestFilters(t *testing.T) {
	h := fixtureHandler(newFixtureSource())
	labels := func(p *Page) []string {
		out := []string{}
		for _, c := range p.Components {
			out = append(out, c.Label)
		}
		return out
	}
	sources := func(p *Page) []string {
		out := []string{}
		for _, c := range p.Catalog.Problems {
			out = append(out, c.Source)
		}
		return out
	}
	orgs := func(p *Page) []string {
		out := []string{}
		for _, o := range p.Organizations {
			out = append(out, o.Name)
		}
		return out
	}
	all := []string{"acme", "globex", "initech"}
	for _, tc := range []struct {
		query                      string
		components, problems, orgs []string
		unowned                    int
	}{
		{"", []string{"api", hostileLabel, "frontend/web", "newsvc", "shop", "worker"}, []string{brokenYAML, "catalog/billing.yaml:7"}, all, 1},
		{"component=shop", []string{"shop"}, []string{}, all, 0},
		{"component=sho", []string{}, []string{}, all, 0},
		// the component the catalog dropped: no component, but the reason why
		{"component=billing", []string{}, []string{"catalog/billing.yaml:7"}, all, 0},
		{"owner=team-platform", []string{"api", "worker"}, []string{}, all, 0},
		{"owner=team-shop&component=newsvc", []string{"newsvc"}, []string{}, all, 0},
		{"problems=1", []string{"shop", "worker"}, []string{brokenYAML, "catalog/billing.yaml:7"}, []string{"initech"}, 1},
		{"problems=1&owner=team-platform", []string{"worker"}, []string{}, []string{"initech"}, 0},
		{"problems=0", []string{"api", hostileLabel, "frontend/web", "newsvc", "shop", "worker"}, []string{brokenYAML, "catalog/billing.yaml:7"}, all, 1},
	} {
		p := getPage(t, h, tc.query)
		if d := cmp.Diff(tc.components, labels(p)); d != "" {
			t.Errorf("%s: components (-want +got):\n%s", tc.query, d)
		}
		if d := cmp.Diff(tc.problems, sources(p)); d != "" {
			t.Errorf("%s: catalog problems (-want +got):\n%s", tc.query, d)
		}
		if d := cmp.Diff(tc.orgs, orgs(p)); d != "" {
			t.Errorf("%s: organizations (-want +got):\n%s", tc.query, d)
		}
		if len(p.UnownedPipelineProblems) != tc.unowned || p.ComponentsTotal != 6 {
			t.Errorf("%s: %d unowned pipeline problems, %d components in all", tc.query, len(p.UnownedPipelineProblems), p.ComponentsTotal)
		}
	}

	// The HTML applies the same filter, and its JSON link keeps it.
	_, body := get(t, h, http.MethodGet, "/status?owner=team-platform&problems=1")
	if !strings.Contains(body, ">worker</a>") || strings.Contains(body, ">api</a>") || strings.Contains(body, ">shop</a>") {
		t.Error("the HTML does not apply ?owner=team-platform&problems=1")
	}
	if !strings.Contains(body, `href="?format=json&amp;owner=team-platform&amp;problems=1"`) {
		t.Error("the JSON link drops the filter")
	}
	if _, body := get(t, h, http.MethodGet, "/status?component=nope"); !strings.Contains(body, "No component matches the filter.") {
		t.Error("an empty result does not say that the filter matched nothing")
	}
}

func TestRequests(t *testing.T) {
	h := fixtureHandler(newFixtureSource())
	for _, tc := range []struct {
		method, target string
		code           int
	}{
		{http.MethodPost, "/status", http.StatusMethodNotAllowed},
		{http.MethodGet, "/status?compnent=shop", http.StatusBadRequest},
		{http.MethodGet, "/status?component=a&component=b", http.StatusBadRequest},
		{http.MethodGet, "/status?component=" + strings.Repeat("x", maxValueBytes+1), http.StatusBadRequest},
		{http.MethodGet, "/status?" + strings.Repeat("problems=1&", 100), http.StatusBadRequest},
		{http.MethodGet, "/status?format=xml", http.StatusBadRequest},
		{http.MethodGet, "/status?problems=yes", http.StatusBadRequest},
		{http.MethodGet, "/status?component=%zz", http.StatusBadRequest},
		{http.MethodGet, "/status?format=html&problems=true", http.StatusOK},
	} {
		res, body := get(t, h, tc.method, tc.target)
		if res.StatusCode != tc.code {
			t.Errorf("%s %.60s: status %d, want %d: %s", tc.method, tc.target, res.StatusCode, tc.code, body)
		}
	}
	if res, _ := get(t, h, http.MethodPost, "/status"); res.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("405 without Allow: %v", res.Header)
	}
	for _, target := range []string{"/status", "/status?format=json"} {
		gres, gbody := get(t, h, http.MethodGet, target)
		res, body := get(t, h, http.MethodHead, target)
		if res.StatusCode != http.StatusOK || body != "" || res.Header.Get("Content-Type") != gres.Header.Get("Content-Type") ||
			res.Header.Get("Content-Length") != gres.Header.Get("Content-Length") || gres.Header.Get("Content-Length") != strconv.Itoa(len(gbody)) {
			t.Errorf("HEAD %s: status %d, %d bytes of body, headers %v (GET: %v)", target, res.StatusCode, len(body), res.Header, gres.Header)
		}
		if gres.Header.Get("X-Content-Type-Options") != "nosniff" || !strings.Contains(gres.Header.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("GET %s: headers %v", target, gres.Header)
		}
	}
}

// TestEmptySource is the page before anything was published: no snapshot, no catalog.
func TestEmptySource(t *testing.T) {
	h := fixtureHandler(&fakeSource{})
	if res, body := get(t, h, http.MethodGet, "/status"); res.StatusCode != http.StatusOK || !strings.Contains(body, "Deployment snapshot: none yet") ||
		!strings.Contains(body, "No organization is polled yet.") {
		t.Errorf("status %d:\n%s", res.StatusCode, body)
	}
	_, body := get(t, h, http.MethodGet, "/status?format=json")
	if strings.Contains(body, "null") {
		t.Errorf("a list is null rather than []:\n%s", body)
	}
}

// TestModelPerSnapshot checks the cache: one model per published (snapshot, catalog) pair.
func TestModelPerSnapshot(t *testing.T) {
	src := newFixtureSource()
	h := fixtureHandler(src).(*handler)
	first, _ := h.current()
	if m, _ := h.current(); m != first {
		t.Fatal("the model was rebuilt for an unchanged snapshot")
	}
	next := fixtureSnapshot()
	next.Components = next.Components[:1]
	src.snap.Store(next)
	if m, _ := h.current(); m == first || len(m.components) != 1+2 { // api, plus the catalog's newsvc and shop
		t.Fatalf("the model did not follow the new snapshot: %d components", len(m.components))
	}
	src.cat.Store(fixtureCatalog())
	if m, _ := h.current(); m.cat != src.Catalog() {
		t.Fatal("the model did not follow the new catalog")
	}
}

// TestConcurrentRequests runs requests while snapshots are swapped in, for the race detector.
func TestConcurrentRequests(t *testing.T) {
	src := newFixtureSource()
	h := fixtureHandler(src)
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
				src.snap.Store(fixtureSnapshot())
			}
		}
	})
	var reqs sync.WaitGroup
	for i := range 8 {
		reqs.Go(func() {
			for range 20 {
				target := "/status"
				if i%2 == 0 {
					target += "?format=json&problems=1"
				}
				if res, body := get(t, h, http.MethodGet, target); res.StatusCode != http.StatusOK || len(body) == 0 {
					t.Errorf("status %d", res.StatusCode)
				}
			}
		})
	}
	reqs.Wait()
	close(stop)
	wg.Wait()
}

func TestWebURL(t *testing.T) {
	for in, want := range map[string]string{
		"https://buildkite.com/acme/shop/builds/1": "https://buildkite.com/acme/shop/builds/1",
		"http://buildkite.example/x":               "http://buildkite.example/x",
		"HTTPS://buildkite.com/a":                  "HTTPS://buildkite.com/a",
		"javascript:alert(1)":                      "",
		"JavaScript://%0aalert(1)":                 "",
		"data:text/html,<script>":                  "",
		"//buildkite.com/acme":                     "",
		"/acme/shop":                               "",
		"https:opaque":                             "",
		"https://exa mple.com/\x00":                "",
		"":                                         "",
	} {
		if got := webURL(in); got != want {
			t.Errorf("webURL(%q) = %q, want %q", in, got, want)
		}
	}
}
