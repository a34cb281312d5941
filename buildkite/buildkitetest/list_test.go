package buildkitetest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

var t0 = time.Date(2026, 1, 10, 10, 0, 0, 0, time.UTC)

func at(d time.Duration) buildkite.Timestamp { return buildkite.Timestamp{Time: t0.Add(d)} }

func TestPaginationAndLinks(t *testing.T) {
	f := New()
	a := start(t, f)
	for i := range 250 {
		f.AddBuild("acme", "web", buildkite.Build{Branch: "main", CreatedAt: at(time.Duration(i) * time.Second)})
	}

	resp, page1 := a.list("organizations/acme/pipelines/web/builds")
	if len(page1) != 30 {
		t.Fatalf("default page has %d builds, want 30", len(page1))
	}
	l := links(resp.Header.Get("Link"))
	host := strings.TrimSuffix(a.base, "/v2/")
	if want := host + "/v2/organizations/acme/pipelines/web/builds?page=2"; l["next"] != want {
		t.Errorf("next = %q, want %q", l["next"], want)
	}
	if want := host + "/v2/organizations/acme/pipelines/web/builds?page=9"; l["last"] != want {
		t.Errorf("last = %q, want %q", l["last"], want)
	}
	if _, ok := l["prev"]; ok {
		t.Errorf("first page has a prev link: %v", l)
	}

	// per_page above the maximum is clamped to 100; the query survives in the links.
	resp, big := a.list("organizations/acme/pipelines/web/builds?branch=main&per_page=500")
	if len(big) != 100 {
		t.Errorf("per_page=500 gave %d builds, want 100", len(big))
	}
	l = links(resp.Header.Get("Link"))
	if want := host + "/v2/organizations/acme/pipelines/web/builds?branch=main&per_page=500&page=3"; l["last"] != want {
		t.Errorf("last = %q, want %q", l["last"], want)
	}

	// Following next links visits every build once, newest first.
	var numbers []float64
	next := "organizations/acme/pipelines/web/builds?per_page=100"
	pages := 0
	for next != "" {
		resp, bs := a.list(next)
		for _, b := range bs {
			numbers = append(numbers, b["number"].(float64))
		}
		l := links(resp.Header.Get("Link"))
		next = l["next"]
		pages++
		if pages == 3 {
			if l["prev"] == "" || l["first"] == "" || next != "" || l["last"] != "" {
				t.Errorf("last page links = %v, want prev and first only", l)
			}
		}
	}
	if pages != 3 || len(numbers) != 250 {
		t.Fatalf("walked %d pages and %d builds, want 3 and 250", pages, len(numbers))
	}
	for i, n := range numbers {
		if n != float64(250-i) {
			t.Fatalf("build %d of the walk is #%v, want #%d", i, n, 250-i)
		}
	}

	// A page past the end is empty, not an error.
	_, empty := a.list("organizations/acme/pipelines/web/builds?page=20")
	if len(empty) != 0 {
		t.Errorf("page 20 has %d builds, want 0", len(empty))
	}
}

func TestOrderingNewestCreatedFirst(t *testing.T) {
	f := New()
	a := start(t, f)
	// Added out of order, across pipelines; equal created_at: the later-added comes first.
	for _, c := range []struct {
		pipe string
		min  int
		msg  string
	}{{"a", 5, "m5"}, {"b", 1, "m1"}, {"a", 9, "m9"}, {"b", 5, "m5b"}, {"a", 3, "m3"}} {
		f.AddBuild("acme", c.pipe, buildkite.Build{Message: c.msg, CreatedAt: at(time.Duration(c.min) * time.Minute)})
	}
	_, bs := a.list("organizations/acme/builds")
	if diff := cmp.Diff([]string{"m9", "m5b", "m5", "m3", "m1"}, field(bs, "message")); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
}

// filterFixture is a small org with one build per interesting case; builds are named by message.
func filterFixture(t *testing.T) (*Fake, *api) {
	f := New()
	a := start(t, f)
	u1 := &buildkite.User{ID: "user-1", Name: "One", Email: "one@example.com"}
	add := func(pipe, msg, branch, commit string, created time.Duration, state string, finished time.Duration, mutate func(*buildkite.Build)) {
		b := buildkite.Build{Message: msg, Branch: branch, Commit: commit, CreatedAt: at(created), State: state}
		if finished >= 0 {
			b.FinishedAt = at(finished)
		}
		if mutate != nil {
			mutate(&b)
		}
		f.AddBuild("acme", pipe, b)
	}
	m := time.Minute
	add("web", "b1", "main", "c1", 0, "passed", 10*m, func(b *buildkite.Build) {
		b.Creator = u1
		b.MetaData = map[string]string{"environment": "production"}
	})
	add("web", "b2", "feature/dev-login", "c2", 1*m, "failed", 5*m, nil)
	add("web", "b3", "dev", "c3", 2*m, "running", -1, nil)
	add("api", "b4", "main", "c1", 3*m, "passed", -1, func(b *buildkite.Build) { b.Blocked = true })
	add("api", "b5", "release/1.0", "c4", 4*m, "skipped", 4*m, nil)
	add("api", "b6", "main", "c5", 5*m, "canceled", 6*m, func(b *buildkite.Build) {
		b.MetaData = map[string]string{"environment": "staging"}
	})
	add("web", "b7", "main", "c6", 6*m, "not_run", 6*m, nil)
	add("web", "b8", "devops", "c7", 7*m, "scheduled", -1, nil)
	return f, a
}

func q(d time.Duration) string { return url.QueryEscape(t0.Add(d).Format(time.RFC3339Nano)) }

func TestFilters(t *testing.T) {
	f, a := filterFixture(t)
	f.AddBuild("other", "x", buildkite.Build{Message: "b9", Branch: "main", CreatedAt: at(8 * time.Minute)})
	m := time.Minute
	cases := []struct {
		path string
		want []string
	}{
		{"organizations/acme/builds", []string{"b8", "b7", "b6", "b5", "b4", "b3", "b2", "b1"}},
		{"organizations/acme/builds?branch=main", []string{"b7", "b6", "b4", "b1"}},
		{"organizations/acme/builds?branch[]=main&branch[]=dev", []string{"b7", "b6", "b4", "b3", "b1"}},
		{"organizations/acme/builds?branch%5B%5D=main&branch%5B%5D=dev", []string{"b7", "b6", "b4", "b3", "b1"}},
		{"organizations/acme/builds?branch=*dev*", []string{"b8", "b3", "b2"}},
		{"organizations/acme/builds?branch=dev*", []string{"b8", "b3"}},
		{"organizations/acme/builds?branch=feature/*", []string{"b2"}},
		{"organizations/acme/builds?commit=c1", []string{"b4", "b1"}},
		{"organizations/acme/builds?commit[]=c1&commit[]=c4", []string{"b5", "b4", "b1"}},
		{"organizations/acme/builds?commit=c", nil}, // short SHAs do not match
		{"organizations/acme/builds?created_from=" + q(2*m), []string{"b8", "b7", "b6", "b5", "b4", "b3"}},
		{"organizations/acme/builds?created_to=" + q(2*m), []string{"b2", "b1"}},
		{"organizations/acme/builds?created_from=" + q(2*m) + "&created_to=" + q(5*m), []string{"b5", "b4", "b3"}},
		{"organizations/acme/builds?finished_from=" + q(6*m), []string{"b7", "b6", "b1"}},
		{"organizations/acme/builds?finished_from=" + q(6*m+time.Millisecond), []string{"b1"}},
		{"organizations/acme/builds?creator=user-1", []string{"b1"}},
		{"organizations/acme/builds?state=running", []string{"b3"}},
		{"organizations/acme/builds?state[]=running&state[]=scheduled", []string{"b8", "b3"}},
		{"organizations/acme/builds?state=finished", []string{"b6", "b4", "b2", "b1"}},
		{"organizations/acme/builds?state=blocked", []string{"b4"}},
		{"organizations/acme/builds?state=passed", []string{"b1"}},
		{"organizations/acme/builds?state[]=skipped&state[]=not_run", []string{"b7", "b5"}},
		{"organizations/acme/builds?meta_data[environment]=production", []string{"b1"}},
		{"organizations/acme/builds?meta_data%5Benvironment%5D=staging", []string{"b6"}},
		{"organizations/acme/builds?state=finished&branch=main", []string{"b6", "b4", "b1"}},
		{"organizations/acme/builds?state=finished&finished_from=" + q(5*m), []string{"b6", "b2", "b1"}},
		{"organizations/acme/builds?include_paused=false&include_retried_jobs=true", []string{"b8", "b7", "b6", "b5", "b4", "b3", "b2", "b1"}},
		{"organizations/acme/pipelines/web/builds", []string{"b8", "b7", "b3", "b2", "b1"}},
		{"organizations/acme/pipelines/web/builds?branch=main", []string{"b7", "b1"}},
		{"organizations/acme/pipelines/api/builds?state=finished", []string{"b6", "b4"}},
		{"organizations/acme/pipelines/api/builds?finished_from=" + q(4*m), []string{"b6", "b5"}},
		{"builds?branch=main", []string{"b9", "b7", "b6", "b4", "b1"}},
		{"builds?created_from=" + q(7*m), []string{"b9", "b8"}},
	}
	for _, c := range cases {
		t.Run(c.path, func(t *testing.T) {
			_, bs := a.list(c.path)
			if c.want == nil {
				c.want = []string{}
			}
			if diff := cmp.Diff(c.want, field(bs, "message")); diff != "" {
				t.Errorf("builds (-want +got):\n%s", diff)
			}
		})
	}
}

func TestBadQueryValues(t *testing.T) {
	_, a := filterFixture(t)
	for _, c := range []struct{ query, mention string }{
		{"created_from=yesterday", "created_from"},
		{"created_to=2026-13-45T00:00:00Z", "created_to"},
		{"finished_from=1700000000", "finished_from"},
		{"state=done", `state "done"`},
	} {
		resp, body := a.get("organizations/acme/builds?" + c.query)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", c.query, resp.StatusCode)
		}
		var m map[string]string
		if err := json.Unmarshal(body, &m); err != nil || !strings.Contains(m["message"], c.mention) {
			t.Errorf("%s: body %s does not name %s", c.query, body, c.mention)
		}
	}
}

func TestDeepPage(t *testing.T) {
	f := New(WithDeepPageLimit(3))
	a := start(t, f)
	for range 10 {
		f.AddBuild("acme", "web", buildkite.Build{})
	}
	_, ok := a.list("organizations/acme/builds?per_page=1&page=3")
	if len(ok) != 1 {
		t.Errorf("page 3 has %d builds, want 1", len(ok))
	}
	for _, path := range []string{"organizations/acme/builds?per_page=1&page=4", "organizations/acme/pipelines/web/builds?page=4", "builds?page=99"} {
		resp, body := a.get(path)
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: status %d, want 400", path, resp.StatusCode)
		}
		wantMessage(t, body, "Listing builds this deep is not supported. Please narrow your query using filters such as branch or created_from.")
	}
	if New().cfg.deepPageLimit != DefaultDeepPageLimit {
		t.Errorf("default deep page limit is not DefaultDeepPageLimit")
	}
}

func TestExcludeAndRetriedJobs(t *testing.T) {
	f := New()
	a := start(t, f)
	failed := 1
	b := f.AddBuild("acme", "web", buildkite.Build{State: "failed", FinishedAt: at(time.Minute), Jobs: []buildkite.Job{
		{Type: "script", Name: "test", StepKey: "test", State: "failed", ExitStatus: &failed},
	}})
	if err := f.RetryBuild("acme", "web", b.Number); err != nil {
		t.Fatal(err)
	}

	_, all := a.list("organizations/acme/builds")
	if _, ok := all[0]["jobs"]; !ok {
		t.Error("jobs missing by default")
	}
	if _, ok := all[0]["pipeline"]; !ok {
		t.Error("pipeline missing by default")
	}
	if jobs := all[0]["jobs"].([]any); len(jobs) != 1 || jobs[0].(map[string]any)["state"] != "scheduled" {
		t.Errorf("default jobs = %v, want only the new attempt", jobs)
	}
	_, withRetried := a.list("organizations/acme/builds?include_retried_jobs=true")
	jobs := withRetried[0]["jobs"].([]any)
	if len(jobs) != 2 || jobs[0].(map[string]any)["retried"] != true || jobs[1].(map[string]any)["retried"] != false {
		t.Errorf("include_retried_jobs jobs = %v, want the retried attempt and the new one", jobs)
	}

	for _, path := range []string{"organizations/acme/builds", "organizations/acme/pipelines/web/builds", "builds", "organizations/acme/pipelines/web/builds/1"} {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		var got map[string]any
		if strings.HasSuffix(path, "/1") {
			_, got = a.object(path+sep+"exclude_jobs=true&exclude_pipeline=true", http.StatusOK)
		} else {
			_, bs := a.list(path + sep + "exclude_jobs=true&exclude_pipeline=true")
			got = bs[0]
		}
		if _, ok := got["jobs"]; ok {
			t.Errorf("%s: jobs present with exclude_jobs=true", path)
		}
		if _, ok := got["pipeline"]; ok {
			t.Errorf("%s: pipeline present with exclude_pipeline=true", path)
		}
		if got["url"] != "https://api.buildkite.com/v2/organizations/acme/pipelines/web/builds/1" {
			t.Errorf("%s: url = %v; with the pipeline excluded it is how clients find the slug", path, got["url"])
		}
	}
}

func TestGetBuild(t *testing.T) {
	f := New()
	a := start(t, f)
	f.AddBuild("acme", "web", buildkite.Build{State: "running", Jobs: []buildkite.Job{
		{Type: "script", State: "passed"},
		{Type: "waiter", State: "finished"},
		{Type: "script", State: "failed", Retried: true},
		{Type: "script", State: "running"},
		{Type: "manual", State: "blocked"},
	}})

	_, b := a.object("organizations/acme/pipelines/web/builds/1", http.StatusOK)
	counts := b["job_state_counts"].(map[string]any)
	want := map[string]any{"total": 4.0, "states": map[string]any{"passed": 2.0, "running": 1.0, "blocked": 1.0}}
	if diff := cmp.Diff(want, counts); diff != "" {
		t.Errorf("job_state_counts (-want +got):\n%s", diff)
	}
	_, b = a.object("organizations/acme/pipelines/web/builds/1?include_retried_jobs=true&job_states[]=passed&job_states[]=failed", http.StatusOK)
	var types []string
	for _, j := range b["jobs"].([]any) {
		types = append(types, j.(map[string]any)["type"].(string)+"/"+j.(map[string]any)["state"].(string))
	}
	if diff := cmp.Diff([]string{"script/passed", "waiter/finished", "script/failed"}, types); diff != "" {
		t.Errorf("job_states[] filtered jobs (-want +got):\n%s", diff)
	}
	if got := b["job_state_counts"].(map[string]any)["total"]; got != 5.0 {
		t.Errorf("job_state_counts.total with retried jobs = %v, want 5 (counts ignore job_states)", got)
	}
	_, list := a.list("organizations/acme/builds")
	if _, ok := list[0]["job_state_counts"]; ok {
		t.Error("list endpoint renders job_state_counts; only Get-a-build has it")
	}
}

func TestPipelines(t *testing.T) {
	f := New()
	a := start(t, f)
	for i := range 45 {
		f.AddPipeline("acme", buildkite.Pipeline{Name: fmt.Sprintf("Service %02d", i), Repository: fmt.Sprintf("git@github.com:acme/svc%02d.git", i), DefaultBranch: "main"})
	}
	resp, ps := a.list("organizations/acme/pipelines")
	if len(ps) != 30 || ps[0]["slug"] != "service-00" || links(resp.Header.Get("Link"))["next"] == "" {
		t.Errorf("first page: %d pipelines, first %v, Link %q", len(ps), ps[0]["slug"], resp.Header.Get("Link"))
	}
	_, ps = a.list("organizations/acme/pipelines?name=SERVICE%201&per_page=100")
	if diff := cmp.Diff([]string{"service-10", "service-11", "service-12", "service-13", "service-14", "service-15", "service-16", "service-17", "service-18", "service-19"}, field(ps, "slug")); diff != "" {
		t.Errorf("name filter (-want +got):\n%s", diff)
	}
	_, ps = a.list("organizations/acme/pipelines?repository=svc44")
	if diff := cmp.Diff([]string{"service-44"}, field(ps, "slug")); diff != "" {
		t.Errorf("repository filter (-want +got):\n%s", diff)
	}
	_, p := a.object("organizations/acme/pipelines/service-07", http.StatusOK)
	if p["default_branch"] != "main" || p["name"] != "Service 07" || p["repository"] != "git@github.com:acme/svc07.git" {
		t.Errorf("pipeline = %v", p)
	}
}
