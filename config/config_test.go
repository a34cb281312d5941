package config

import (
	"errors"
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
		{"slos:\n  objectives:\n    production: {succes: 0.9}\n", `line 3: slos.objectives.production.succes: unknown key (did you mean "success"?)`},
		{"alerts:\n  stuck_after: soon\n", `"soon" is not a duration`},
		{"slos: {duration_threshold: 14m}\n", "slos.duration_threshold"},
		{"slos: {objectives: {production: {success: 1.5}}}\n", "slos.objectives.production.success"},
		{"slos: {overrides: [{success: 0.9}]}\n", "slos.overrides[0]: set exactly one of component or owner"},
		{"approval_timing: sometimes\n", "approval_timing"},
		{"default_environment: ''\n", "default_environment"},
		{"alerts: {rate_limit_low_ratio: 2}\n", "rate_limit_low_ratio"},
		{"alerts:\n  min_deployments: many\n", `line 2: alerts.min_deployments: expected a whole number, got "many"`},
		{"slos:\n  objectives: [production]\n", "line 2: slos.objectives: expected a mapping of keys (key: value), got a list"},
		{"slos: {window: [7d]}\n", "slos.window: expected a duration such as 30s, 15m, 2h or 7d, got a list"},
		{"just words\n", "line 1: the file must be a mapping of keys"},
		{"slos:\n  window: 7d\n  window: 8d\n", "line 3: slos.window: defined twice (first at line 2)"},
		{"alerts:\n  failing_for: 5m\n nope\n", "not valid YAML: did not find expected key"},
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

// Every problem of a file is reported at once, each with its line and key, and none in Go's words.
func TestParseReportsEveryProblem(t *testing.T) {
	doc := `default_enviroment: prod
approval_timing: sometimes
slos:
  window: soon
  duration_threshold: 14m
  objectives:
    production: {success: 1.5, duration: abc}
  overrides:
    - {success: 0.9}
alerts:
  stuck_afterr: 3h
  min_deployments: 0
`
	_, err := Parse([]byte(doc))
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("Parse = %v, want an *Error", err)
	}
	want := []string{
		`line 1: default_enviroment: unknown key (did you mean "default_environment"?)`,
		`line 2: approval_timing: "sometimes" is not one of seen_blocked, all, off`,
		`line 4: slos.window: "soon" is not a duration`,
		`line 5: slos.duration_threshold: 14m is not a bucket of buildkite_deployment_duration_seconds; use one of 1m, 5m, 10m, 15m, 30m, 1h`,
		`line 7: slos.objectives.production.duration: expected a number, got "abc"`,
		`line 7: slos.objectives.production.success: 1.5 must be between 0 and 1`,
		`line 9: slos.overrides[0]: set exactly one of component or owner`,
		`line 11: alerts.stuck_afterr: unknown key (did you mean "stuck_after"?)`,
		`line 12: alerts.min_deployments: must be at least 1`,
	}
	if len(e.Problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%s", len(e.Problems), len(want), problemLines(e))
	}
	for i, w := range want {
		if i >= len(e.Problems) || !strings.HasPrefix(e.Problems[i].String(), w) {
			t.Errorf("problem %d: want prefix %q\ngot:\n%s", i, w, problemLines(e))
			break
		}
	}
	for _, p := range e.Problems {
		for _, goWord := range []string{"config.", "float64", "int", "unmarshal", "!!", "type "} {
			if strings.Contains(p.Message, goWord) && !strings.Contains(p.Message, "buildkite_deployment") {
				t.Errorf("problem %q speaks Go (%q)", p, goWord)
			}
		}
	}
	// The one-line form, for logs, has them all.
	if msg := err.Error(); !strings.HasPrefix(msg, "9 problems: ") || strings.Count(msg, "; line ") != 8 {
		t.Errorf("Error() = %q", msg)
	}
}

func problemLines(e *Error) string {
	var b strings.Builder
	for _, p := range e.Problems {
		b.WriteString("  " + p.String() + "\n")
	}
	return b.String()
}

func TestLoadErrorCarriesTheFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "bad.yml")
	if err := os.WriteFile(p, []byte("nope: 1\nslos: {window: 0s}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	var e *Error
	if !errors.As(err, &e) || e.File != p || len(e.Problems) != 2 {
		t.Fatalf("Load = %#v", err)
	}
	if !strings.HasPrefix(err.Error(), "config file "+p+": 2 problems: line 1: nope: unknown key") {
		t.Errorf("Error() = %q", err)
	}
}
