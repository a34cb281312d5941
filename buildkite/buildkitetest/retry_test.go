package buildkitetest

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// retryKeys are the job fields that tell attempts apart (reference §5).
var retryKeys = []string{"id", "state", "retried", "retried_in_job_id", "retries_count", "retry_type", "retry_source", "started_at", "finished_at"}

// attempts returns the retry fields of a rendered build's jobs.
func attempts(t *testing.T, b map[string]any) []map[string]any {
	t.Helper()
	jobs, ok := b["jobs"].([]any)
	if !ok {
		t.Fatalf("build has no jobs array: %v", b["jobs"])
	}
	out := make([]map[string]any, 0, len(jobs))
	for _, j := range jobs {
		m := j.(map[string]any)
		got := map[string]any{}
		for _, k := range retryKeys {
			v, ok := m[k]
			if !ok {
				t.Errorf("job %v has no %q field", m["id"], k)
			}
			got[k] = v
		}
		out = append(out, got)
	}
	return out
}

func stamp(d time.Duration) string { return t0.Add(d).Format("2006-01-02T15:04:05.000Z") }

// TestRetryBuildLifecycle scripts a deployment that fails, is retried and passes: with
// include_retried_jobs every endpoint shows both attempts linked both ways, and failing_at
// survives the retry that passed.
func TestRetryBuildLifecycle(t *testing.T) {
	clock := &fakeClock{t: t0.Add(3 * time.Minute)}
	f := New(WithClock(clock.Now))
	a := start(t, f)
	b := f.AddBuild("acme", "deploy", buildkite.Build{State: "running", CreatedAt: at(0), StartedAt: at(time.Second),
		Jobs: []buildkite.Job{{Type: "script", StepKey: "deploy", State: "running", StartedAt: at(time.Second)}}})
	first := b.Jobs[0].ID
	path := "organizations/acme/pipelines/deploy/builds/1"

	if err := f.FinishJob("acme", "deploy", 1, first, "failed", t0.Add(time.Second), t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	_, got := a.object(path, http.StatusOK)
	if got["state"] != "failing" || got["failing_at"] != stamp(time.Minute) {
		t.Errorf("after the job failed: state %v failing_at %v, want failing since the job's finish", got["state"], got["failing_at"])
	}
	if err := f.FinishBuild("acme", "deploy", 1, "failed", t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.RetryBuild("acme", "deploy", 1); err != nil {
		t.Fatal(err)
	}
	stored, _ := f.Build("acme", "deploy", 1)
	second := stored.Jobs[len(stored.Jobs)-1].ID
	_, got = a.object(path, http.StatusOK)
	wantNew := map[string]any{
		"id": second, "state": "scheduled", "retried": false, "retried_in_job_id": nil, "retries_count": 1.0,
		"retry_type": "manual", "retry_source": map[string]any{"job_id": first, "retry_type": "manual"},
		"started_at": nil, "finished_at": nil,
	}
	if diff := cmp.Diff([]map[string]any{wantNew}, attempts(t, got)); diff != "" {
		t.Errorf("after RetryBuild, default jobs (-want +got):\n%s", diff)
	}
	if got["state"] != "running" || got["finished_at"] != nil {
		t.Errorf("after RetryBuild: state %v finished_at %v, want running again", got["state"], got["finished_at"])
	}
	if s := got["jobs"].([]any)[0].(map[string]any)["scheduled_at"]; s != stamp(3*time.Minute) {
		t.Errorf("new attempt scheduled_at %v, want the fake's clock %s", s, stamp(3*time.Minute))
	}

	if err := f.FinishJob("acme", "deploy", 1, second, "passed", t0.Add(4*time.Minute), t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.FinishBuild("acme", "deploy", 1, "passed", t0.Add(5*time.Minute)); err != nil {
		t.Fatal(err)
	}
	wantOld := map[string]any{
		"id": first, "state": "failed", "retried": true, "retried_in_job_id": second, "retries_count": nil,
		"retry_type": nil, "retry_source": nil, "started_at": stamp(time.Second), "finished_at": stamp(time.Minute),
	}
	wantNew["state"], wantNew["started_at"], wantNew["finished_at"] = "passed", stamp(4*time.Minute), stamp(5*time.Minute)
	for _, p := range []string{path, "organizations/acme/builds", "organizations/acme/pipelines/deploy/builds", "builds"} {
		get := func(query string) map[string]any {
			if p == path {
				_, b := a.object(p+query, http.StatusOK)
				return b
			}
			_, bs := a.list(p + query)
			if len(bs) != 1 {
				t.Fatalf("%s: %d builds, want 1", p, len(bs))
			}
			return bs[0]
		}
		got := get("?include_retried_jobs=true")
		if diff := cmp.Diff([]map[string]any{wantOld, wantNew}, attempts(t, got)); diff != "" {
			t.Errorf("%s with include_retried_jobs (-want +got):\n%s", p, diff)
		}
		if got["state"] != "passed" || got["failing_at"] != stamp(time.Minute) || got["finished_at"] != stamp(5*time.Minute) {
			t.Errorf("%s: state %v failing_at %v finished_at %v; want passed, failing_at kept", p, got["state"], got["failing_at"], got["finished_at"])
		}
		if diff := cmp.Diff([]map[string]any{wantNew}, attempts(t, get(""))); diff != "" {
			t.Errorf("%s by default, the retried attempt hidden (-want +got):\n%s", p, diff)
		}
	}

	// The models decode the links.
	var decoded buildkite.Build
	_, body := a.get(path + "?include_retried_jobs=true")
	if err := json.Unmarshal(body, &decoded); err != nil {
		t.Fatal(err)
	}
	if j := decoded.Jobs; len(j) != 2 || j[0].RetriedInJobID != j[1].ID || j[1].RetrySource == nil ||
		j[1].RetrySource.JobID != j[0].ID || j[1].RetryType != buildkite.RetryTypeManual || j[0].RetrySource != nil {
		t.Errorf("decoded jobs = %+v", j)
	}
}

func TestFinishBuildFailedSetsFailingAt(t *testing.T) {
	f := New()
	a := start(t, f)
	f.AddBuild("acme", "deploy", buildkite.Build{State: "running", CreatedAt: at(0)})
	f.AddBuild("acme", "deploy", buildkite.Build{State: "running", CreatedAt: at(0)})
	if err := f.FinishBuild("acme", "deploy", 1, "failed", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.FinishBuild("acme", "deploy", 2, "passed", t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, b := a.object("organizations/acme/pipelines/deploy/builds/1", http.StatusOK); b["failing_at"] != stamp(time.Minute) {
		t.Errorf("failed build failing_at = %v, want its finish", b["failing_at"])
	}
	if _, b := a.object("organizations/acme/pipelines/deploy/builds/2", http.StatusOK); b["failing_at"] != nil {
		t.Errorf("passed build failing_at = %v, want null", b["failing_at"])
	}
}

func TestRetryJob(t *testing.T) {
	clock := &fakeClock{t: t0.Add(10 * time.Minute)}
	f := New(WithClock(clock.Now))
	a := start(t, f)
	b := f.AddBuild("acme", "deploy", buildkite.Build{State: "running", CreatedAt: at(0), StartedAt: at(time.Second), Jobs: []buildkite.Job{
		{Type: "script", StepKey: "test", State: "running"},
		{Type: "script", StepKey: "lint", State: "running"},
		{Type: "script", StepKey: "flaky", State: "running", SoftFailed: true},
	}})
	test, lint, flaky := b.Jobs[0].ID, b.Jobs[1].ID, b.Jobs[2].ID
	path := "organizations/acme/pipelines/deploy/builds/1"
	build := func() map[string]any {
		t.Helper()
		_, got := a.object(path+"?include_retried_jobs=true", http.StatusOK)
		return got
	}

	// A soft failure does not fail the build.
	if err := f.FinishJob("acme", "deploy", 1, flaky, "failed", t0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if got := build(); got["state"] != "running" || got["failing_at"] != nil {
		t.Errorf("after a soft failure: state %v failing_at %v, want running", got["state"], got["failing_at"])
	}
	// Lint passes and is retried by hand while the build runs: the build keeps running.
	if err := f.FinishJob("acme", "deploy", 1, lint, "passed", t0, t0.Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.RetryJob("acme", "deploy", 1, lint, buildkite.RetryTypeManual); err != nil {
		t.Fatal(err)
	}
	if got := build(); got["state"] != "running" || got["finished_at"] != nil {
		t.Errorf("after retrying a job of a running build: state %v finished_at %v, want running", got["state"], got["finished_at"])
	}
	// Test fails, so the build is failing; its automatic retries keep it failing.
	if err := f.FinishJob("acme", "deploy", 1, test, "failed", t0, t0.Add(2*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.RetryJob("acme", "deploy", 1, test, buildkite.RetryTypeAutomatic); err != nil {
		t.Fatal(err)
	}
	got := build()
	if got["state"] != "failing" || got["failing_at"] != stamp(2*time.Minute) || got["finished_at"] != nil {
		t.Errorf("after retrying the failed job: state %v failing_at %v finished_at %v, want failing since 10:02",
			got["state"], got["failing_at"], got["finished_at"])
	}
	retry1 := attempts(t, got)[4]["id"].(string)
	clock.Advance(time.Minute)
	if err := f.FinishJob("acme", "deploy", 1, retry1, "failed", t0.Add(10*time.Minute), t0.Add(11*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.RetryJob("acme", "deploy", 1, retry1, buildkite.RetryTypeAutomatic); err != nil {
		t.Fatal(err)
	}
	got = build()
	if got["failing_at"] != stamp(2*time.Minute) {
		t.Errorf("failing_at = %v after a second failure, want the first (10:02)", got["failing_at"])
	}
	jobs := attempts(t, got)
	if len(jobs) != 6 {
		t.Fatalf("%d jobs, want 6 (3 + 3 retries)", len(jobs))
	}
	if j := jobs[1]; j["retried"] != true || j["retried_in_job_id"] != jobs[3]["id"] {
		t.Errorf("retried lint job = %v, want retried in %v", j, jobs[3]["id"])
	}
	if j := jobs[3]; j["retry_type"] != "manual" || cmp.Diff(map[string]any{"job_id": lint, "retry_type": "manual"}, j["retry_source"]) != "" {
		t.Errorf("lint retry = %v", j)
	}
	wantLast := map[string]any{
		"id": jobs[5]["id"], "state": "scheduled", "retried": false, "retried_in_job_id": nil, "retries_count": 2.0,
		"retry_type": "automatic", "retry_source": map[string]any{"job_id": retry1, "retry_type": "automatic"},
		"started_at": nil, "finished_at": nil,
	}
	if diff := cmp.Diff(wantLast, jobs[5]); diff != "" {
		t.Errorf("second automatic retry (-want +got):\n%s", diff)
	}
	if jobs[4]["retried_in_job_id"] != jobs[5]["id"] || jobs[4]["retries_count"] != 1.0 {
		t.Errorf("first automatic retry = %v, want retried in %v with retries_count 1", jobs[4], jobs[5]["id"])
	}
	_, def := a.object(path, http.StatusOK)
	if n := len(def["jobs"].([]any)); n != 3 {
		t.Errorf("%d jobs by default, want 3: one attempt a step", n)
	}

	// Retrying a job of a finished build re-opens it.
	if err := f.FinishBuild("acme", "deploy", 1, "failed", t0.Add(20*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if err := f.RetryJob("acme", "deploy", 1, flaky, buildkite.RetryTypeManual); err != nil {
		t.Fatal(err)
	}
	if got := build(); got["state"] != "running" || got["finished_at"] != nil || got["failing_at"] != stamp(2*time.Minute) {
		t.Errorf("after retrying a job of a finished build: state %v finished_at %v failing_at %v", got["state"], got["finished_at"], got["failing_at"])
	}

	w := f.AddBuild("acme", "deploy", buildkite.Build{State: "running", Jobs: []buildkite.Job{{Type: "waiter", State: "finished"}}})
	blocked := f.AddBuild("acme", "deploy", buildkite.Build{State: "passed", Blocked: true, Jobs: []buildkite.Job{{Type: "script", State: "passed"}}})
	for _, c := range []struct {
		number               int
		job, retryType, want string
	}{
		{1, test, buildkite.RetryTypeManual, "retried already"},
		{1, jobs[5]["id"].(string), buildkite.RetryTypeManual, "only a finished job"},
		{1, "no-such-job", buildkite.RetryTypeManual, "has no job"},
		{1, lint, "sometimes", "neither"},
		{w.Number, w.Jobs[0].ID, buildkite.RetryTypeManual, "only script jobs"},
		{blocked.Number, blocked.Jobs[0].ID, buildkite.RetryTypeManual, "build acme/deploy#3 is blocked"},
	} {
		if err := f.RetryJob("acme", "deploy", c.number, c.job, c.retryType); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("RetryJob(#%d, %s, %s) = %v, want an error saying %q", c.number, c.job, c.retryType, err, c.want)
		}
	}
}

func TestFinishJobErrors(t *testing.T) {
	f := New()
	b := f.AddBuild("acme", "deploy", buildkite.Build{State: "running", Jobs: []buildkite.Job{{Type: "script", State: "running"}}})
	if err := f.FinishJob("acme", "deploy", 1, b.Jobs[0].ID, "succeeded", t0, t0); err == nil {
		t.Error("FinishJob with an unknown state did not fail")
	}
	if err := f.FinishJob("acme", "deploy", 1, "nope", "passed", t0, t0); err == nil {
		t.Error("FinishJob of a missing job did not fail")
	}
	if err := f.FinishJob("acme", "deploy", 2, b.Jobs[0].ID, "passed", t0, t0); err == nil {
		t.Error("FinishJob of a missing build did not fail")
	}
	// A build not yet running (here: already finished) is not made failing.
	if err := f.FinishBuild("acme", "deploy", 1, "passed", t0); err != nil {
		t.Fatal(err)
	}
	if err := f.FinishJob("acme", "deploy", 1, b.Jobs[0].ID, "failed", t0, t0); err != nil {
		t.Fatal(err)
	}
	if got, _ := f.Build("acme", "deploy", 1); got.State != "passed" || !got.FailingAt.IsZero() {
		t.Errorf("finished build after FinishJob failed: state %s failing_at %v, want unchanged", got.State, got.FailingAt)
	}
}
