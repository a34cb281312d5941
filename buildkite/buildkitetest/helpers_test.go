package buildkitetest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// These tests talk to the fake as any client would: net/http and JSON decoded into maps, never
// our client package, so they check the wire format, not our models.

const testToken = "bkua_test_all"

// fakeClock is a settable clock for WithClock.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// start starts f over real HTTP with a full-scope token and returns a client for it.
func start(t *testing.T, f *Fake) *api {
	t.Helper()
	f.SetToken(testToken, "read_builds", "read_pipelines")
	base := f.Start()
	t.Cleanup(f.Close)
	return &api{t: t, base: base, token: testToken, c: &http.Client{Timeout: 30 * time.Second}}
}

type api struct {
	t     *testing.T
	base  string // ends in /v2/
	token string
	c     *http.Client
}

func (a *api) with(token string) *api {
	c := *a
	c.token = token
	return &c
}

// get fetches path (relative to the base, or absolute) and returns the response and its body.
func (a *api) get(path string) (*http.Response, []byte) {
	a.t.Helper()
	u := path
	if !strings.HasPrefix(path, "http") {
		u = a.base + path
	}
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("GET %s: reading body: %v", u, err)
	}
	return resp, body
}

// list fetches a build or pipeline list, insisting on 200.
func (a *api) list(path string) (*http.Response, []map[string]any) {
	a.t.Helper()
	resp, body := a.get(path)
	if resp.StatusCode != http.StatusOK {
		a.t.Fatalf("GET %s: status %d, body %s", path, resp.StatusCode, body)
	}
	var out []map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		a.t.Fatalf("GET %s: body is not a JSON array: %v\n%s", path, err, body)
	}
	return resp, out
}

// object fetches one object, insisting on status.
func (a *api) object(path string, status int) (*http.Response, map[string]any) {
	a.t.Helper()
	resp, body := a.get(path)
	if resp.StatusCode != status {
		a.t.Fatalf("GET %s: status %d, want %d; body %s", path, resp.StatusCode, status, body)
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		a.t.Fatalf("GET %s: body is not a JSON object: %v\n%s", path, err, body)
	}
	return resp, out
}

// field returns the strings found under key in each object.
func field(objs []map[string]any, key string) []string {
	out := make([]string, 0, len(objs))
	for _, o := range objs {
		s, _ := o[key].(string)
		out = append(out, s)
	}
	return out
}

// links parses a Link header into rel → URL.
func links(h string) map[string]string {
	out := map[string]string{}
	if h == "" {
		return out
	}
	for _, part := range strings.Split(h, ",") {
		u, rel, ok := strings.Cut(part, ";")
		if !ok {
			continue
		}
		u = strings.Trim(strings.TrimSpace(u), "<>")
		rel = strings.TrimSpace(rel)
		rel = strings.TrimSuffix(strings.TrimPrefix(rel, `rel="`), `"`)
		out[rel] = u
	}
	return out
}

func wantMessage(t *testing.T, body []byte, want string) {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(body, &m); err != nil {
		t.Fatalf("error body is not JSON: %v\n%s", err, body)
	}
	if m["message"] != want {
		t.Errorf("message = %q, want %q", m["message"], want)
	}
}
