package collector

import (
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

func TestNewValidatesOptions(t *testing.T) {
	ok := Options{Client: newTestClient(t, newFake()), Catalog: func() []backstage.Component { return nil }, Log: store.NewMemory(), PollInterval: time.Second}
	if _, err := New(ok); err != nil {
		t.Fatalf("valid options: %v", err)
	}
	for name, tc := range map[string]struct {
		mod  func(*Options)
		want string
	}{
		"client":    {func(o *Options) { o.Client = nil }, "client"},
		"catalog":   {func(o *Options) { o.Catalog = nil }, "catalog"},
		"log":       {func(o *Options) { o.Log = nil }, "log"},
		"interval":  {func(o *Options) { o.PollInterval = 0 }, "poll interval"},
		"backfill":  {func(o *Options) { o.Backfill = -time.Hour }, "backfill"},
		"retention": {func(o *Options) { o.Retention, o.Backfill = time.Hour, 2*time.Hour }, "retention"},
	} {
		o := ok
		tc.mod(&o)
		if _, err := New(o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: New = %v, want an error about %q", name, err, tc.want)
		}
	}
}

// TestSetConfig: a reloaded configuration applies at once to the objectives of the snapshot
// and, for builds classified from then on, to the environment aliases; stored records keep the
// environment they were counted under.
func TestSetConfig(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.AddBuild(testOrg, "shop", finished(time.Now().Add(-time.Hour), time.Minute, "passed", map[string]string{"environment": "prod-east"}))
		h := start(t, f, []backstage.Component{component("shop", "shop")})
		objective := series("buildkite_deployment_slo_objective_ratio", "component", "shop", "environment", "production", "slo", "success")
		expect(t, h.metrics(), map[string]float64{
			deployments("shop", "prod-east", "shop", "passed"): 1,
			objective: absent, // no production deployment yet
		})
		cfg := config.Default()
		cfg.EnvironmentAliases = map[string]string{"prod-east": "production"}
		v := 0.99
		cfg.SLOs.Objectives["production"] = config.Objective{Success: &v}
		h.c.SetConfig(cfg)
		f.AddBuild(testOrg, "shop", finished(time.Now().Add(-time.Minute), time.Second, "passed", map[string]string{"environment": "prod-east"}))
		h.next()
		expect(t, h.metrics(), map[string]float64{
			deployments("shop", "prod-east", "shop", "passed"):  1,
			deployments("shop", "production", "shop", "passed"): 1,
			objective: 0.99,
		})
	})
}
