package buildkitetest

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

func TestAuthErrors(t *testing.T) {
	f := New()
	a := start(t, f)
	f.AddBuild("acme", "web", buildkite.Build{})
	f.SetToken("pipelines-only", "read_pipelines")
	f.SetToken("builds-only", "read_builds")
	f.SetToken("no-scopes")

	const unauthorized = "Authentication required. Please supply a valid API Access Token: https://buildkite.com/docs/apis/rest-api#authentication"
	for _, tok := range []string{"", "wrong-token"} {
		resp, body := a.with(tok).get("organizations/acme/builds")
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("token %q: status %d, want 401", tok, resp.StatusCode)
		}
		wantMessage(t, body, unauthorized)
		if strings.Contains(string(body), "wrong-token") {
			t.Errorf("401 body echoes the token: %s", body)
		}
	}
	// HTTP basic auth is not supported (reference §1).
	req, _ := http.NewRequest(http.MethodGet, a.base+"organizations/acme/builds", nil)
	req.SetBasicAuth(testToken, "")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("basic auth: status %d, want 401", resp.StatusCode)
	}

	for _, c := range []struct{ token, path, scope string }{
		{"pipelines-only", "organizations/acme/builds", "read_builds"},
		{"pipelines-only", "organizations/acme/pipelines/web/builds/1", "read_builds"},
		{"pipelines-only", "builds", "read_builds"},
		{"builds-only", "organizations/acme/pipelines", "read_pipelines"},
		{"builds-only", "organizations/acme/pipelines/web", "read_pipelines"},
		{"no-scopes", "organizations/acme/pipelines/web/builds", "read_builds"},
	} {
		resp, body := a.with(c.token).get(c.path)
		if resp.StatusCode != http.StatusForbidden {
			t.Errorf("%s with %s: status %d, want 403", c.path, c.token, resp.StatusCode)
		}
		wantMessage(t, body, "Your access token doesn't have the "+c.scope+" scope")
	}
	// The access-token endpoint needs no scope.
	_, tok := a.with("no-scopes").object("access-token", http.StatusOK)
	if diff := cmp.Diff([]any{}, tok["scopes"]); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
}

func TestNotFound(t *testing.T) {
	f := New()
	a := start(t, f)
	f.AddBuild("acme", "web", buildkite.Build{})
	for _, c := range []struct{ path, msg string }{
		{"organizations/nope/builds", "No organization found"},
		{"organizations/nope/pipelines", "No organization found"},
		{"organizations/nope/pipelines/web/builds/1", "No organization found"},
		{"organizations/acme/pipelines/nope", "No pipeline found"},
		{"organizations/acme/pipelines/nope/builds", "No pipeline found"},
		{"organizations/acme/pipelines/nope/builds/1", "No pipeline found"},
		{"organizations/acme/pipelines/web/builds/2", "No build found"},
		{"organizations/acme/pipelines/web/builds/abc", "No build found"},
		{"organizations/acme/agents", "Not Found"},
		{"user", "Not Found"},
	} {
		resp, body := a.get(c.path)
		if resp.StatusCode != http.StatusNotFound {
			t.Errorf("%s: status %d, want 404", c.path, resp.StatusCode)
		}
		wantMessage(t, body, c.msg)
	}
	req, _ := http.NewRequest(http.MethodPost, a.base+"organizations/acme/builds", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST: status %d, want 404", resp.StatusCode)
	}
}

func TestAccessToken(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	f := New(WithClock(clock.Now))
	a := start(t, f)
	f.AddBuild("acme", "web", buildkite.Build{})
	resp, tok := a.object("access-token", http.StatusOK)
	if tok["created_at"] != "2026-03-04 05:06:07 UTC" {
		t.Errorf("created_at = %v, want the \"2006-01-02 15:04:05 UTC\" format", tok["created_at"])
	}
	if diff := cmp.Diff([]any{"read_builds", "read_pipelines"}, tok["scopes"]); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
	for _, k := range []string{"uuid", "description", "expires_at", "user"} {
		if _, ok := tok[k]; !ok {
			t.Errorf("access token has no %q", k)
		}
	}
	if strings.Contains(string(mustJSON(tok)), testToken) {
		t.Error("access-token body contains the token itself")
	}
	// It counts against the user bucket only.
	if resp.Header.Get("RateLimit-Scope") != "" || resp.Header.Get("RateLimit-User-Remaining") != "49" {
		t.Errorf("headers = %v, want only the user bucket, 49 left", resp.Header)
	}
	resp, _ = a.list("organizations/acme/builds")
	if resp.Header.Get("RateLimit-Remaining") != "199" || resp.Header.Get("RateLimit-User-Remaining") != "48" {
		t.Errorf("after access-token + one org request: org remaining %s (want 199), user remaining %s (want 48)",
			resp.Header.Get("RateLimit-Remaining"), resp.Header.Get("RateLimit-User-Remaining"))
	}
}

func TestRateLimits(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 1, 1, 12, 0, 10, 0, time.UTC)}
	f := New(WithClock(clock.Now), WithOrgLimit(8), WithUserLimit(5))
	a := start(t, f)
	f.SetToken("second")
	f.SetToken("second", "read_builds")
	f.AddBuild("acme", "web", buildkite.Build{Message: "only"})
	b := a.with("second")

	for i := 1; i <= 5; i++ {
		resp, _ := a.list("organizations/acme/builds")
		h := resp.Header
		want := map[string]string{
			"RateLimit-Scope": "rest", "RateLimit-Limit": "8", "RateLimit-Remaining": strconv.Itoa(8 - i), "RateLimit-Reset": "50",
			"RateLimit-User-Scope": "rest_user", "RateLimit-User-Limit": "5", "RateLimit-User-Remaining": strconv.Itoa(5 - i), "RateLimit-User-Reset": "50",
		}
		for k, v := range want {
			if h.Get(k) != v {
				t.Errorf("request %d: %s = %q, want %q", i, k, h.Get(k), v)
			}
		}
	}
	clock.Advance(500 * time.Millisecond)
	resp, body := a.get("organizations/acme/builds")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("6th request of the user: status %d, want 429", resp.StatusCode)
	}
	var tooMany map[string]any
	if err := json.Unmarshal(body, &tooMany); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"message": "You have exceeded your rest API rate limit. Please wait 50 seconds before making more requests.",
		"scope":   "rest_user", "limit": 5.0, "current": 6.0, "reset": 50.0,
	}
	if diff := cmp.Diff(want, tooMany); diff != "" {
		t.Errorf("429 body (-want +got):\n%s", diff)
	}
	if resp.Header.Get("RateLimit-User-Warning") == "" || resp.Header.Get("Link") != "" || strings.Contains(string(body), "only") {
		t.Errorf("429 response was served or lacks the warning: headers %v body %s", resp.Header, body)
	}

	// The org bucket is shared: the second user has its own 5 but the org has 8-6=2 left.
	clock.Advance(10 * time.Second) // 12:00:20.5 → reset rounds 39.5 s up to 40
	for i := 1; i <= 2; i++ {
		resp, _ := b.list("organizations/acme/builds")
		if resp.Header.Get("RateLimit-User-Remaining") != strconv.Itoa(5-i) || resp.Header.Get("RateLimit-Remaining") != strconv.Itoa(2-i) ||
			resp.Header.Get("RateLimit-Reset") != "40" {
			t.Errorf("second user request %d: headers %v", i, resp.Header)
		}
	}
	resp, body = b.get("organizations/acme/builds")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("org bucket exhausted: status %d, want 429", resp.StatusCode)
	}
	if err := json.Unmarshal(body, &tooMany); err != nil {
		t.Fatal(err)
	}
	if tooMany["scope"] != "rest" || tooMany["limit"] != 8.0 || tooMany["current"] != 9.0 || resp.Header.Get("RateLimit-Warning") == "" {
		t.Errorf("org 429: body %v headers %v", tooMany, resp.Header)
	}

	// A new window starts at the next minute.
	clock.Advance(39*time.Second + 500*time.Millisecond) // 12:01:00
	resp, bs := a.list("organizations/acme/builds")
	if len(bs) != 1 || resp.Header.Get("RateLimit-Remaining") != "7" || resp.Header.Get("RateLimit-User-Remaining") != "4" ||
		resp.Header.Get("RateLimit-Reset") != "60" {
		t.Errorf("after the window: headers %v", resp.Header)
	}

	// Switched off: no headers, no 429.
	g := New(WithRateLimits(false), WithUserLimit(1))
	ga := start(t, g)
	for range 3 {
		resp, _ := ga.get("access-token")
		if resp.StatusCode != http.StatusOK || resp.Header.Get("RateLimit-User-Remaining") != "" {
			t.Errorf("rate limits off: status %d headers %v", resp.StatusCode, resp.Header)
		}
	}
}

func TestFaults(t *testing.T) {
	f := New()
	a := start(t, f)
	f.AddBuild("acme", "web", buildkite.Build{Message: "hello"})

	f.InjectFault(Fault{Route: RouteOrgBuilds, Status: http.StatusBadGateway, Times: 2})
	_, ok := a.list("organizations/acme/pipelines/web/builds") // other route: untouched
	if len(ok) != 1 {
		t.Fatal("fault hit another route")
	}
	for i := range 2 {
		resp, body := a.get("organizations/acme/builds")
		if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(body), "502 Bad Gateway") || json.Valid(body) {
			t.Errorf("faulted request %d: status %d body %s", i, resp.StatusCode, body)
		}
	}
	a.list("organizations/acme/builds") // the fault is used up

	// Truncate: status 200, the body stops mid-JSON.
	f.InjectFault(Fault{Truncate: true})
	req, _ := http.NewRequest(http.MethodGet, a.base+"organizations/acme/builds", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, readErr := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || readErr == nil || json.Valid(body) || len(body) == 0 {
		t.Errorf("truncated: status %d, read error %v, body %q", resp.StatusCode, readErr, body)
	}

	// Rate-limit storm: 429s with the documented body, and the buckets are untouched.
	f.InjectFault(Fault{RateLimitStorm: true, Times: 3, Scope: "rest_user"})
	for range 3 {
		resp, body := a.get("organizations/acme/builds")
		var m map[string]any
		_ = json.Unmarshal(body, &m)
		if resp.StatusCode != http.StatusTooManyRequests || m["scope"] != "rest_user" || m["limit"] != 50.0 ||
			!strings.HasPrefix(m["message"].(string), "You have exceeded your rest API rate limit. Please wait ") ||
			resp.Header.Get("RateLimit-User-Remaining") != "0" || resp.Header.Get("RateLimit-User-Warning") == "" {
			t.Errorf("storm: status %d body %s headers %v", resp.StatusCode, body, resp.Header)
		}
	}
	resp2, _ := a.list("organizations/acme/builds")
	// Counted: the pipeline request, the org request after the 502s, the truncated one, this one.
	if got := resp2.Header.Get("RateLimit-User-Remaining"); got != "46" {
		t.Errorf("after the storm user remaining = %s, want 46 (storms and 502s are not counted)", got)
	}

	// Delay: a client that gives up earlier gets its deadline; the request is logged with status 0.
	f.ResetRequests()
	f.InjectFault(Fault{Delay: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ = http.NewRequestWithContext(ctx, http.MethodGet, a.base+"organizations/acme/builds", nil)
	req.Header.Set("Authorization", "Bearer "+testToken)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("delayed request returned before the client's deadline")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("delayed request: %v, want deadline exceeded", err)
	}
	waitFor(t, func() bool { return len(f.Requests()) == 1 })
	if r := f.Requests()[0]; r.Status != 0 {
		t.Errorf("abandoned request logged with status %d, want 0", r.Status)
	}
}

// waitFor polls cond: the server side of a request a client abandoned finishes on its own time.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 10s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRequestLog(t *testing.T) {
	clock := &fakeClock{t: time.Date(2026, 2, 2, 2, 2, 2, 0, time.UTC)}
	f := New(WithClock(clock.Now))
	a := start(t, f)
	f.AddBuild("acme", "web", buildkite.Build{})
	a.list("organizations/acme/builds?state[]=running&per_page=100")
	clock.Advance(time.Second)
	a.with("").get("organizations/acme/pipelines/web/builds/1")
	a.get("nothing/here")

	want := []Request{
		{Method: "GET", Path: "/v2/organizations/acme/builds", Route: RouteOrgBuilds,
			Query: url.Values{"state[]": {"running"}, "per_page": {"100"}}, Status: 200, Time: clock.Now().Add(-time.Second)},
		{Method: "GET", Path: "/v2/organizations/acme/pipelines/web/builds/1", Route: RouteBuild, Query: url.Values{}, Status: 401, Time: clock.Now()},
		{Method: "GET", Path: "/v2/nothing/here", Route: "", Query: url.Values{}, Status: 404, Time: clock.Now()},
	}
	if diff := cmp.Diff(want, f.Requests()); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
	f.ResetRequests()
	if n := len(f.Requests()); n != 0 {
		t.Errorf("%d requests after ResetRequests", n)
	}
}

func TestRetryFinishUnblock(t *testing.T) {
	clock := &fakeClock{t: t0}
	f := New(WithClock(clock.Now))
	a := start(t, f)
	one := 1
	b := f.AddBuild("acme", "deploy", buildkite.Build{
		State: "failed", CreatedAt: at(0), StartedAt: at(time.Second), FailingAt: at(time.Minute), FinishedAt: at(2 * time.Minute),
		Jobs: []buildkite.Job{{Type: "script", StepKey: "deploy", State: "failed", ExitStatus: &one}},
	})
	finishedSince := "organizations/acme/builds?finished_from=" + q(0)
	if _, bs := a.list(finishedSince); len(bs) != 1 {
		t.Fatalf("finished build not listed by finished_from")
	}
	if err := f.RetryBuild("acme", "deploy", b.Number); err != nil {
		t.Fatal(err)
	}
	_, got := a.object("organizations/acme/pipelines/deploy/builds/1", http.StatusOK)
	if got["state"] != "running" || got["finished_at"] != nil || got["failing_at"] != "2026-01-10T10:01:00.000Z" {
		t.Errorf("retried build: state %v finished_at %v failing_at %v", got["state"], got["finished_at"], got["failing_at"])
	}
	if _, bs := a.list(finishedSince); len(bs) != 0 {
		t.Errorf("re-opened build still listed by finished_from")
	}
	if _, bs := a.list("organizations/acme/builds?state=running"); len(bs) != 1 {
		t.Errorf("re-opened build not listed as running")
	}
	if err := f.RetryBuild("acme", "deploy", b.Number); err == nil {
		t.Error("RetryBuild of a running build did not fail")
	}
	if err := f.FinishBuild("acme", "deploy", b.Number, "passed", t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, bs := a.list("organizations/acme/builds?finished_from=" + q(5*time.Minute)); len(bs) != 1 || bs[0]["state"] != "passed" {
		t.Errorf("finished again: %v", bs)
	}
	if err := f.FinishBuild("acme", "deploy", b.Number, "running", t0); err == nil {
		t.Error("FinishBuild with a non-terminal state did not fail")
	}

	// A build blocked on a block step keeps its state and says blocked; Unblock releases it.
	f.AddBuild("acme", "deploy", buildkite.Build{State: "passed", Blocked: true, CreatedAt: at(time.Hour), Jobs: []buildkite.Job{
		{Type: "script", State: "passed"}, {Type: "manual", Label: "Release?", State: "blocked"},
	}})
	_, got = a.object("organizations/acme/pipelines/deploy/builds/2", http.StatusOK)
	if got["state"] != "passed" || got["blocked"] != true {
		t.Errorf("blocked build renders state %v blocked %v", got["state"], got["blocked"])
	}
	if err := f.Unblock("acme", "deploy", 2, t0.Add(90*time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, got = a.object("organizations/acme/pipelines/deploy/builds/2", http.StatusOK)
	manual := got["jobs"].([]any)[1].(map[string]any)
	if got["state"] != "running" || got["blocked"] != false || manual["state"] != "unblocked" ||
		manual["unblocked_at"] != "2026-01-10T11:30:00.000Z" || manual["unblockable"] != false || manual["unblocked_by"] == nil {
		t.Errorf("after Unblock: build %v/%v, manual job %v", got["state"], got["blocked"], manual)
	}
	if err := f.Unblock("acme", "deploy", 2, t0); err == nil {
		t.Error("second Unblock did not fail")
	}
	if err := f.UpdateBuild("acme", "deploy", 2, func(b *buildkite.Build) { b.Number = 7 }); err == nil {
		t.Error("UpdateBuild changing the number did not fail")
	}
	if err := f.UpdateBuild("acme", "deploy", 9, func(*buildkite.Build) {}); err == nil {
		t.Error("UpdateBuild of a missing build did not fail")
	}
}

var (
	rfc3339Millis = regexp.MustCompile(`^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$`)
	legacyFormat  = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC$`)
)

func TestTimestampFormats(t *testing.T) {
	f := New()
	a := start(t, f)
	f.AddPipeline("acme", buildkite.Pipeline{Slug: "old", CreatedAt: buildkite.Timestamp{Time: time.Date(2021, 3, 30, 13, 51, 46, 560e6, time.UTC)}})
	f.AddPipeline("acme", buildkite.Pipeline{Slug: "new", CreatedAt: buildkite.Timestamp{Time: time.Date(2021, 3, 30, 13, 51, 46, 560e6, time.UTC)}})
	if err := f.SetLegacyPipelineTimestamps("acme", "old", true); err != nil {
		t.Fatal(err)
	}
	f.AddBuild("acme", "old", buildkite.Build{CreatedAt: at(1500 * time.Microsecond), StartedAt: at(time.Second), FinishedAt: at(time.Minute)})

	_, old := a.object("organizations/acme/pipelines/old", http.StatusOK)
	_, neu := a.object("organizations/acme/pipelines/new", http.StatusOK)
	if old["created_at"] != "2021-03-30 13:51:46 UTC" || neu["created_at"] != "2021-03-30T13:51:46.560Z" {
		t.Errorf("pipeline created_at: legacy %v, RFC 3339 %v", old["created_at"], neu["created_at"])
	}
	_, bs := a.list("organizations/acme/builds")
	if bs[0]["created_at"] != "2026-01-10T10:00:00.001Z" {
		t.Errorf("created_at = %v, want milliseconds", bs[0]["created_at"])
	}
	for _, k := range []string{"created_at", "started_at", "finished_at"} {
		if s, _ := bs[0][k].(string); !rfc3339Millis.MatchString(s) {
			t.Errorf("%s = %q, not RFC 3339 with milliseconds", k, s)
		}
	}
	if bs[0]["scheduled_at"] != nil {
		t.Errorf("unset scheduled_at = %v, want null", bs[0]["scheduled_at"])
	}
	// Both formats decode with the model's Timestamp.
	for _, s := range []any{old["created_at"], neu["created_at"]} {
		var ts buildkite.Timestamp
		if err := ts.UnmarshalJSON([]byte(strconv.Quote(s.(string)))); err != nil || ts.Unix() != 1617112306 {
			t.Errorf("%v decodes to %v, %v", s, ts, err)
		}
	}
	g := New(WithLegacyPipelineTimestamps())
	ga := start(t, g)
	g.AddPipeline("acme", buildkite.Pipeline{Slug: "p"})
	_, p := ga.object("organizations/acme/pipelines/p", http.StatusOK)
	if s, _ := p["created_at"].(string); !legacyFormat.MatchString(s) {
		t.Errorf("WithLegacyPipelineTimestamps: created_at = %q", s)
	}
}

func TestTransportRejectsOtherHosts(t *testing.T) {
	c := &http.Client{Transport: New().Transport()}
	resp, err := c.Get("https://api.buildkite.com/v2/builds")
	if err == nil {
		resp.Body.Close()
		t.Fatal("the in-process transport served the real API's host")
	}
}

// TestConcurrentUse runs readers and writers together; run with -race.
func TestConcurrentUse(t *testing.T) {
	f := New(WithRateLimits(false))
	a := start(t, f)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 50 {
				b := f.AddBuild("acme", "p"+strconv.Itoa(w), buildkite.Build{CreatedAt: at(time.Duration(50-i) * time.Second)})
				_ = f.FinishBuild("acme", b.Pipeline.Slug, b.Number, "passed", t0.Add(time.Duration(i)*time.Minute))
				_ = f.RetryBuild("acme", b.Pipeline.Slug, b.Number)
			}
		})
		wg.Go(func() {
			for range 50 {
				a.list("organizations/acme/builds?finished_from=" + q(0))
				a.list("organizations/acme/builds?state=running&per_page=5")
			}
		})
	}
	wg.Wait()
	_, bs := a.list("organizations/acme/builds?state=running&per_page=100")
	if len(bs) != 100 {
		t.Errorf("%d running builds listed, want 100 (200 retried builds)", len(bs))
	}
}

// TestDeleteFinishedBefore deletes old builds as a retention policy does: every route stops
// returning them, running builds stay whatever their age, and numbers go on.
func TestDeleteFinishedBefore(t *testing.T) {
	f := New()
	a := start(t, f)
	f.AddBuild("acme", "web", buildkite.Build{CreatedAt: at(0), State: "running"})                                  // #1, old but running
	f.AddBuild("acme", "web", buildkite.Build{CreatedAt: at(0), State: "passed", FinishedAt: at(10 * time.Minute)}) // #2, deleted
	f.AddBuild("acme", "api", buildkite.Build{CreatedAt: at(0), State: "failed", FinishedAt: at(20 * time.Minute)}) // #1, retried: kept
	f.AddBuild("acme", "api", buildkite.Build{CreatedAt: at(time.Hour), State: "passed", FinishedAt: at(2 * time.Hour)})
	f.AddBuild("other", "web", buildkite.Build{CreatedAt: at(0), State: "canceled", FinishedAt: at(30 * time.Minute)})
	f.AddBuild("acme", "web", buildkite.Build{CreatedAt: at(0), State: "passed", Blocked: true, FinishedAt: at(5 * time.Minute)}) // #3, blocked: kept
	if err := f.RetryBuild("acme", "api", 1); err != nil {
		t.Fatal(err)
	}
	if n := f.DeleteFinishedBefore(t0.Add(time.Hour)); n != 2 {
		t.Errorf("DeleteFinishedBefore deleted %d builds, want 2", n)
	}
	if n := f.DeleteFinishedBefore(t0.Add(time.Hour)); n != 0 {
		t.Errorf("a second DeleteFinishedBefore deleted %d builds, want 0", n)
	}
	numbers := func(path string) []string {
		_, bs := a.list(path)
		var out []string
		for _, b := range bs {
			out = append(out, b["pipeline"].(map[string]any)["slug"].(string)+"#"+strconv.Itoa(int(b["number"].(float64))))
		}
		return out
	}
	for path, want := range map[string][]string{
		"organizations/acme/builds":                                 {"api#2", "web#1", "web#3", "api#1"},
		"organizations/acme/builds?finished_from=" + q(0):           {"api#2", "web#3"},
		"organizations/acme/builds?state[]=running&state[]=blocked": {"web#1", "web#3", "api#1"},
		"organizations/acme/pipelines/web/builds":                   {"web#1", "web#3"},
		"organizations/other/builds":                                nil,
		"builds":                                                    {"api#2", "web#1", "web#3", "api#1"},
	} {
		got := numbers(path)
		slices.Sort(got)
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("%s lists %v, want %v", path, got, want)
		}
	}
	a.object("organizations/acme/pipelines/web/builds/2", http.StatusNotFound)
	a.object("organizations/acme/pipelines/web/builds/3", http.StatusOK)
	a.object("organizations/acme/pipelines/web/builds/1", http.StatusOK)
	if b := f.AddBuild("acme", "web", buildkite.Build{}); b.Number != 4 {
		t.Errorf("the next build of a pipeline whose latest was deleted is #%d, want #4", b.Number)
	}
}
