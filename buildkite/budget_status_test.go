package buildkite_test

import (
	"testing"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

func TestRateLimits(t *testing.T) {
	f := buildkitetest.New()
	f.SetToken(token, allScopes...)
	c := inProcess(t, f, buildkite.Config{})
	if got := c.RateLimits(); len(got) != 0 {
		t.Errorf("before any answer: %+v", got)
	}
	f.AddPipeline("acme", buildkite.Pipeline{Slug: "shop", Name: "shop"})
	if _, err := collect(t, c, "acme", "", buildkite.ListBuildsOptions{}); err != nil {
		t.Fatal(err)
	}
	got := c.RateLimits()
	if len(got) != 2 || got[0].Limit == 0 || got[0].Remaining > got[1].Remaining {
		t.Errorf("after an answer: %+v, want both scopes, the tighter first", got)
	}
	for _, r := range got {
		if r.Scope != "rest" && r.Scope != "rest_user" {
			t.Errorf("scope %q", r.Scope)
		}
	}
}
