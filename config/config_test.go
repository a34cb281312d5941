package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestLoadEmptyPathIsDefault(t *testing.T) {
	c, err := Load("")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(Default(), c); diff != "" {
		t.Errorf("Load(\"\") differs from Default() (-want +got):\n%s", diff)
	}
	if c.DefaultEnvironment != Production || c.SLOs.DurationThreshold.Std() != 15*time.Minute ||
		c.SLOs.Window.Std() != 28*24*time.Hour || c.AwaitingApprovalMaxAge.Std() != 7*24*time.Hour {
		t.Errorf("unexpected defaults: %+v", c)
	}
}

func TestParseFullFile(t *testing.T) {
	c, err := Parse([]byte(`
default_environment: Staging
environment_aliases: {qa: staging, Prod-EU: production}
approval_timing: all
awaiting_approval_max_age: 3d
commit_time_meta_data_key: commit-time
slos:
  duration_threshold: 30m
  window: 7d
  objectives:
    prod: {success: 0.99, duration: 0.8}
    staging: {success: 0.9}
  overrides:
    - {owner: team-a, success: 0.5}
    - {component: shop, environment: live, duration: 0.7}
alerts:
  failing_for: 5m
  min_deployments: 5
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.DefaultEnvironment != Staging || c.ApprovalTiming != ApprovalTimingAll || c.AwaitingApprovalMaxAge.Std() != 72*time.Hour {
		t.Errorf("got %+v", c)
	}
	if got := c.NormalizeEnvironment("PROD-eu"); got != Production {
		t.Errorf("alias from file: got %q", got)
	}
	if got := c.NormalizeEnvironment("stg"); got != Staging {
		t.Errorf("built-in alias kept: got %q", got)
	}
	if c.Alerts.FailingFor.Std() != 5*time.Minute || c.Alerts.MinDeployments != 5 || c.Alerts.StuckAfter.Std() != 2*time.Hour {
		t.Errorf("alerts: %+v", c.Alerts)
	}
	for _, tc := range []struct {
		component, owner, env string
		want                  map[string]float64
	}{
		{"api", "team-b", Production, map[string]float64{SLOSuccess: 0.99, SLODuration: 0.8}},
		{"api", "team-a", Production, map[string]float64{SLOSuccess: 0.5, SLODuration: 0.8}},
		{"shop", "team-a", Production, map[string]float64{SLOSuccess: 0.5, SLODuration: 0.7}},
		{"shop", "team-b", Staging, map[string]float64{SLOSuccess: 0.9}},
		{"api", "team-b", Development, map[string]float64{}},
	} {
		if diff := cmp.Diff(tc.want, c.ObjectivesFor(tc.component, tc.owner, tc.env)); diff != "" {
			t.Errorf("ObjectivesFor(%s, %s, %s) (-want +got):\n%s", tc.component, tc.owner, tc.env, diff)
		}
	}
}

func TestParseErrorsNameTheProblem(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"default_enviroment: prod\n", "default_enviroment"},
		{"slos:\n  objectives:\n    production: {succes: 0.9}\n", "line 3: field succes not found"},
		{"alerts:\n  stuck_after: soon\n", `"soon" is not a duration`},
		{"slos: {duration_threshold: 14m}\n", "slos.duration_threshold"},
		{"slos: {objectives: {production: {success: 1.5}}}\n", "slos.objectives.production.success"},
		{"slos: {overrides: [{success: 0.9}]}\n", "slos.overrides[0]: set exactly one of component or owner"},
		{"approval_timing: sometimes\n", "approval_timing"},
		{"default_environment: ''\n", "default_environment"},
		{"alerts: {rate_limit_low_ratio: 2}\n", "rate_limit_low_ratio"},
	} {
		_, err := Parse([]byte(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want an error containing %q", tc.doc, err, tc.want)
		}
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(p, []byte("nope: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "nope") {
		t.Errorf("Load = %v, want an error naming %s and the key", err, p)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yml")); err == nil {
		t.Error("Load of a missing file succeeded")
	}
}

func TestObjectivesCanBeDropped(t *testing.T) {
	c, err := Parse([]byte("slos: {objectives: {}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := c.ObjectivesFor("a", "b", Production); len(got) != 0 {
		t.Errorf("empty objectives table still yields %v", got)
	}
}

func TestKnownEnvironment(t *testing.T) {
	c := Default()
	for name, want := range map[string]bool{"prod": true, "Production": true, "develop": true, "qa": false, "eu-west": false} {
		if got := c.KnownEnvironment(name); got != want {
			t.Errorf("KnownEnvironment(%q) = %v, want %v", name, got, want)
		}
	}
}
