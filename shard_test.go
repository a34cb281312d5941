package main

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/fixture"
)

// TestShardByOrganization runs one exporter per organization of a two-organization catalog
// (--buildkite.organization): each polls only its organization, counts only its components, and
// names the component whose pipelines span both as a problem.
func TestShardByOrganization(t *testing.T) {
	f := buildkitetest.New(buildkitetest.WithRateLimits(false))
	now := time.Now()
	components := fixture.Populate(f, now)
	const other = "globex"
	for _, p := range []string{"billing", "portal"} {
		f.AddPipeline(other, buildkite.Pipeline{Slug: p, Name: p, DefaultBranch: "main"})
	}
	for i := range 3 {
		at := now.Add(-time.Duration(i+1) * time.Hour)
		f.AddBuild(other, "billing", buildkite.Build{State: buildkite.StatePassed, Branch: "main", Commit: strings.Repeat(fmt.Sprint(i), 40),
			MetaData:  map[string]string{"environment": "production"},
			CreatedAt: buildkite.Timestamp{Time: at}, StartedAt: buildkite.Timestamp{Time: at}, FinishedAt: buildkite.Timestamp{Time: at.Add(time.Minute)}})
	}
	components = append(components,
		backstage.Component{Name: "billing", Namespace: "default", Label: "billing", Ref: "component:default/billing", Owner: "team-billing", Type: "service", Lifecycle: "production",
			Pipelines: []backstage.PipelineRef{{Org: other, Pipeline: "billing"}}},
		// Pipelines in both organizations: split between the shards.
		backstage.Component{Name: "portal", Namespace: "default", Label: "portal", Ref: "component:default/portal", Owner: "team-web", Type: "website", Lifecycle: "production",
			Pipelines: []backstage.PipelineRef{{Org: other, Pipeline: "portal"}, {Org: fixture.Org, Pipeline: fixture.PipelineSandbox}}},
	)
	apiURL := f.Start()
	t.Cleanup(f.Close)
	dir := t.TempDir()
	if err := fixture.WriteFiles(dir, components); err != nil {
		t.Fatal(err)
	}

	for _, shard := range []struct{ org, mine, theirs string }{
		{other, `component="billing"`, `component="worker"`},
		{fixture.Org, `component="worker"`, `component="billing"`},
	} {
		t.Run(shard.org, func(t *testing.T) {
			f.ResetRequests()
			args := fixtureArgs(dir, apiURL, "--buildkite.organization="+shard.org)
			for i, a := range args {
				if strings.HasPrefix(a, "--storage.path=") {
					args[i] = "--storage.path=" + filepath.Join(dir, "data-"+shard.org)
				}
			}
			e := startExporter(t, nil, args...)
			e.waitFor("/-/ready", 60*time.Second, func() bool { code, _ := e.get("/-/ready"); return code == 200 })
			_, body := e.get("/metrics")
			if !strings.Contains(body, "buildkite_deployments_total{"+shard.mine) {
				t.Errorf("no deployments of %s in this shard's /metrics", shard.mine)
			}
			if strings.Contains(body, shard.theirs) {
				t.Errorf("the other shard's %s shows up in /metrics", shard.theirs)
			}
			if got := sample(t, body, "buildkite_exporter_catalog_errors", map[string]string{"reason": "component_spans_shards"}); got != 1 {
				t.Errorf("catalog_errors{reason=component_spans_shards} = %v, want 1 (portal)", got)
			}
			for _, r := range f.Requests() {
				if strings.Contains(r.Path, "organizations/") && !strings.Contains(r.Path, "organizations/"+shard.org+"/") && !strings.HasSuffix(r.Path, "organizations/"+shard.org) {
					t.Errorf("shard %s asked about another organization: %s %s", shard.org, r.Method, r.Path)
				}
			}
			_, status := e.get("/status?format=json")
			if !strings.Contains(status, "component_spans_shards") {
				t.Errorf("/status does not name the split component:\n%.2000s", status)
			}
		})
	}
}
