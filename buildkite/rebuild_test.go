package buildkite_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

func rebuildFake(t *testing.T, scopes ...string) (*buildkitetest.Fake, buildkite.Build) {
	t.Helper()
	f := buildkitetest.New()
	f.SetToken(token, scopes...)
	at := time.Date(2026, 11, 30, 10, 0, 0, 0, time.UTC)
	b := f.AddBuild("acme", "shop-deploy", buildkite.Build{
		Commit: "0123456789abcdef0123456789abcdef01234567", Branch: "main", Message: "Deploy shop",
		State: buildkite.StateFailed, StartedAt: buildkite.Timestamp{Time: at}, FinishedAt: buildkite.Timestamp{Time: at.Add(5 * time.Minute)},
		MetaData: map[string]string{"environment": "production"},
	})
	return f, b
}

func TestRebuildBuild(t *testing.T) {
	f, orig := rebuildFake(t, buildkite.ScopeReadBuilds, buildkite.ScopeWriteBuilds)
	c := overHTTP(t, f, buildkite.Config{})
	nb, err := c.RebuildBuild(context.Background(), "acme", "shop-deploy", orig.Number)
	if err != nil {
		t.Fatal(err)
	}
	if nb.Number != orig.Number+1 || nb.Commit != orig.Commit || nb.Branch != "main" || nb.RebuiltFrom == nil || nb.RebuiltFrom.Number != orig.Number || nb.RebuiltFrom.ID != orig.ID {
		t.Errorf("rebuild = %+v (rebuilt_from %+v), want build %d of commit %s rebuilt from %d", nb, nb.RebuiltFrom, orig.Number+1, orig.Commit, orig.Number)
	}
	reqs := f.Requests()
	if last := reqs[len(reqs)-1]; last.Method != http.MethodPut || last.Route != buildkitetest.RouteRebuild || last.Status != 200 {
		t.Errorf("the fake saw %+v", last)
	}
	// The read endpoint does not accept a PUT, nor the rebuild a GET.
	if _, err := c.RebuildBuild(context.Background(), "acme", "shop-deploy", 999); !errors.Is(err, buildkite.ErrNotFound) {
		t.Errorf("rebuild of a missing build: %v", err)
	}
}

func TestRebuildBuildMissingScope(t *testing.T) {
	f, orig := rebuildFake(t, buildkite.ScopeReadBuilds, buildkite.ScopeReadPipelines)
	c := overHTTP(t, f, buildkite.Config{})
	_, err := c.RebuildBuild(context.Background(), "acme", "shop-deploy", orig.Number)
	var apiErr *buildkite.APIError
	if !errors.As(err, &apiErr) || apiErr.StatusCode != 403 || apiErr.Scope != buildkite.ScopeWriteBuilds {
		t.Fatalf("err = %v, want a 403 naming write_builds", err)
	}
	for _, want := range []string{"PUT ", "lacks the write_builds scope", "doesn't have the write_builds scope"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if _, ok := f.Build("acme", "shop-deploy", orig.Number+1); ok {
		t.Error("a rebuild was created without write_builds")
	}
}

// A write is sent once: a 502 might mean Buildkite started the rebuild, so it is not retried.
func TestRebuildBuildNotRetried(t *testing.T) {
	f, orig := rebuildFake(t, buildkite.ScopeReadBuilds, buildkite.ScopeWriteBuilds)
	c := overHTTP(t, f, buildkite.Config{})
	f.InjectFault(buildkitetest.Fault{Route: buildkitetest.RouteRebuild, Status: http.StatusBadGateway})
	f.ResetRequests()
	if _, err := c.RebuildBuild(context.Background(), "acme", "shop-deploy", orig.Number); err == nil {
		t.Fatal("a 502 was taken for a rebuild")
	}
	if n := len(f.Requests()); n != 1 {
		t.Errorf("%d requests after a 502, want 1: a write must not be retried", n)
	}
}
