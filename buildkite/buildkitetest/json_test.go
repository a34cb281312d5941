package buildkitetest

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

// goldenFixture is one build with every job type (reference §16.1).
func goldenFixture(f *Fake) {
	f.AddPipeline("acme", buildkite.Pipeline{
		Name: "Shop deploy", Slug: "shop-deploy", DefaultBranch: "main", Repository: "git@github.com:acme/shop.git",
		CreatedAt: buildkite.Timestamp{Time: time.Date(2021, 3, 30, 13, 51, 46, 560e6, time.UTC)},
	})
	zero, no := 0, false
	f.AddBuild("acme", "shop-deploy", buildkite.Build{
		Number: 42, State: "passed", Message: "Deploy v1.2.3", Commit: "0a3285898e369d5a7f96e0c33945c2a515737b48",
		Branch: "main", Source: "webhook", Author: &buildkite.Author{Username: "dev", Name: "Dev", Email: "dev@example.com"},
		CreatedAt: at(0), ScheduledAt: at(0), StartedAt: at(5 * time.Second), FinishedAt: at(12 * time.Minute),
		MetaData: map[string]string{"environment": "production", "production:version": "1.2.3"},
		Jobs: []buildkite.Job{
			{Type: "script", Name: ":hammer: build", StepKey: "build", State: "passed", ExitStatus: &zero,
				CreatedAt: at(time.Second), ScheduledAt: at(0), RunnableAt: at(2 * time.Second), StartedAt: at(5 * time.Second), FinishedAt: at(3 * time.Minute)},
			{Type: "waiter", State: "passed"},
			{Type: "manual", Label: ":rocket: Release?", StepKey: "approve", State: "unblocked", Unblockable: &no,
				UnblockedAt: at(8 * time.Minute), UnblockedBy: &buildkite.User{ID: "u1", Name: "Approver", Email: "a@example.com"},
				RunnableAt: at(3 * time.Minute)},
			{Type: "trigger", Name: "Deploy infra", State: "passed", Async: &no, TriggeredBuild: &buildkite.TriggeredBuild{
				ID: "b2", Number: 7, URL: "https://api.buildkite.com/v2/organizations/acme/pipelines/infra/builds/7",
				WebURL: "https://buildkite.com/acme/infra/builds/7"}},
		},
	})
}

func TestBuildJSONGolden(t *testing.T) {
	f := New()
	a := start(t, f)
	goldenFixture(f)
	_, body := a.get("organizations/acme/pipelines/shop-deploy/builds/42")
	var pretty bytes.Buffer
	if err := json.Indent(&pretty, body, "", "  "); err != nil {
		t.Fatalf("body is not JSON: %v", err)
	}
	pretty.WriteByte('\n')
	path := filepath.Join("testdata", "build.golden.json")
	if *update {
		if err := os.WriteFile(path, pretty.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), pretty.String()); diff != "" {
		t.Errorf("Get-a-build JSON differs from %s (-want +got):\n%s", path, diff)
	}
}

func keys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func hasAll(t *testing.T, what string, got map[string]any, want []string) {
	t.Helper()
	for _, k := range want {
		if _, ok := got[k]; !ok {
			t.Errorf("%s has no %q field; it has %v", what, k, keys(got))
		}
	}
}

// TestFieldNames checks the wire names against the reference's lists (§4, §5, §6), written out
// here independently of the renderer.
func TestFieldNames(t *testing.T) {
	f := New()
	a := start(t, f)
	goldenFixture(f)
	_, b := a.object("organizations/acme/pipelines/shop-deploy/builds/42", http.StatusOK)
	hasAll(t, "build", b, []string{"id", "graphql_id", "url", "web_url", "number", "state", "blocked", "blocked_state",
		"cancel_reason", "message", "commit", "branch", "tag", "env", "source", "author", "creator", "created_at",
		"scheduled_at", "started_at", "finished_at", "failing_at", "meta_data", "pull_request", "merge_queue",
		"rebuilt_from", "jobs", "job_state_counts", "pipeline"})
	if b["creator"] != nil {
		t.Errorf("webhook build creator = %v, want null", b["creator"])
	}
	hasAll(t, "author", b["author"].(map[string]any), []string{"username", "name", "email"})
	hasAll(t, "pipeline", b["pipeline"].(map[string]any), []string{"id", "graphql_id", "url", "web_url", "name", "slug",
		"repository", "default_branch", "created_at", "archived_at", "tags", "provider", "builds_url", "visibility"})

	jobs := b["jobs"].([]any)
	byType := map[string]map[string]any{}
	for _, j := range jobs {
		m := j.(map[string]any)
		byType[m["type"].(string)] = m
	}
	common := []string{"id", "graphql_id", "type", "state", "step_key"}
	hasAll(t, "script job", byType["script"], append(common, "name", "build_url", "web_url", "log_url", "raw_log_url",
		"artifacts_url", "command", "soft_failed", "exit_status", "agent", "agent_query_rules", "created_at", "scheduled_at",
		"runnable_at", "started_at", "finished_at", "retried", "retried_in_job_id", "retries_count", "retry_type", "retry_source"))
	hasAll(t, "waiter job", byType["waiter"], common)
	hasAll(t, "manual job", byType["manual"], append(common, "label", "unblocked_by", "unblocked_at", "unblockable", "runnable_at", "unblock_url"))
	hasAll(t, "trigger job", byType["trigger"], append(common, "name", "triggered_build", "async"))
	hasAll(t, "triggered_build", byType["trigger"]["triggered_build"].(map[string]any), []string{"id", "number", "url", "web_url"})
	hasAll(t, "unblocked_by", byType["manual"]["unblocked_by"].(map[string]any), []string{"id", "name", "email"})
	if byType["script"]["exit_status"] != 0.0 {
		t.Errorf("script exit_status = %v, want 0", byType["script"]["exit_status"])
	}

	// The models decode what the fake sends: a round trip through buildkite.Build keeps the facts.
	var decoded buildkite.Build
	raw, _ := json.Marshal(b)
	if err := json.Unmarshal(raw, &decoded); err != nil {
		t.Fatal(err)
	}
	if decoded.Number != 42 || decoded.PipelineSlug() != "shop-deploy" || len(decoded.Jobs) != 4 ||
		!decoded.Jobs[2].UnblockedAt.Equal(t0.Add(8*time.Minute)) || decoded.Jobs[3].TriggeredBuild.Number != 7 {
		t.Errorf("decoded build = %+v", decoded)
	}
}
