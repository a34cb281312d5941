package config

// A native fuzz target for --config.file: Parse is what Load runs on the file's bytes. Seeds are
// under testdata/fuzz/FuzzParse/; scripts/fuzz.sh (make fuzz) runs it for a bounded time, and
// `go test` replays the seeds as ordinary tests.

import (
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// FuzzParse decodes and validates the fuzz bytes as a configuration file. Properties: no panic;
// bounded time (no alias bomb); either an error or a configuration that satisfies everything
// validate promises (objective ratios strictly between 0 and 1, positive durations, a known
// approval timing, a bucket as duration threshold, normalised environment names); the lookups the
// collector makes on it do not panic; written back as YAML it parses again.
func FuzzParse(f *testing.F) {
	f.Add([]byte(""))
	f.Add([]byte("default_environment: prod\nslos:\n  objectives:\n    production: {success: 0.99}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		c, err := Parse(data)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("Parse took %v for %d bytes", d, len(data))
		}
		if err != nil {
			if c != nil {
				t.Errorf("Parse returned a configuration with error %v", err)
			}
			return
		}
		fuzzCheckValid(t, c)
		for _, env := range []string{"", "production", "PROD", " staging ", c.DefaultEnvironment} {
			n := c.NormalizeEnvironment(env)
			if n != strings.ToLower(n) {
				t.Errorf("NormalizeEnvironment(%q) = %q is not lower case", env, n)
			}
			_ = c.KnownEnvironment(env)
			for slo, v := range c.ObjectivesFor("shop", "team-a", n) {
				if !(v > 0 && v < 1) {
					t.Errorf("ObjectivesFor(%q)[%s] = %v, not strictly between 0 and 1", n, slo, v)
				}
			}
		}
		if !c.KnownEnvironment(c.DefaultEnvironment) {
			t.Errorf("the default environment %q is not known", c.DefaultEnvironment)
		}
		out, err := yaml.Marshal(c)
		if err != nil {
			t.Fatalf("a parsed configuration does not encode: %v", err)
		}
		if _, err := Parse(out); err != nil {
			t.Errorf("a parsed configuration, written back, no longer parses: %v\n%s", err, out)
		}
	})
}

func fuzzCheckValid(t *testing.T, c *Config) {
	t.Helper()
	ratio := func(where string, r *float64) {
		if r != nil && !(*r > 0 && *r < 1) { // written so that NaN fails too
			t.Errorf("%s = %v is not strictly between 0 and 1", where, *r)
		}
	}
	lower := func(where, s string) {
		if s != strings.ToLower(strings.TrimSpace(s)) || s == "" {
			t.Errorf("%s %q is empty or not normalised", where, s)
		}
	}
	lower("default_environment", c.DefaultEnvironment)
	for k, v := range c.EnvironmentAliases {
		lower("environment_aliases key", k)
		lower("environment_aliases value", v)
	}
	for env, o := range c.SLOs.Objectives {
		lower("slos.objectives key", env)
		ratio("slos.objectives."+env+".success", o.Success)
		ratio("slos.objectives."+env+".duration", o.Duration)
	}
	for i, o := range c.SLOs.Overrides {
		if (o.Component == "") == (o.Owner == "") || (o.Success == nil && o.Duration == nil) {
			t.Errorf("slos.overrides[%d] = %+v: needs exactly one of component and owner, and an objective", i, o)
		}
		ratio("slos.overrides.success", o.Success)
		ratio("slos.overrides.duration", o.Duration)
	}
	switch c.ApprovalTiming {
	case ApprovalTimingSeenBlocked, ApprovalTimingAll, ApprovalTimingOff:
	default:
		t.Errorf("approval_timing %q", c.ApprovalTiming)
	}
	if !slices.Contains(DurationBuckets, c.SLOs.DurationThreshold.Std().Seconds()) {
		t.Errorf("slos.duration_threshold %v is not a bucket", c.SLOs.DurationThreshold.Std())
	}
	a := c.Alerts
	for name, d := range map[string]Duration{
		"awaiting_approval_max_age": c.AwaitingApprovalMaxAge, "slos.window": c.SLOs.Window,
		"failing_for": a.FailingFor, "slow_threshold": a.SlowThreshold, "stuck_after": a.StuckAfter,
		"awaiting_approval_after": a.AwaitingApprovalAfter, "polling_stale_after": a.PollingStaleAfter,
	} {
		if d <= 0 {
			t.Errorf("%s = %v is not positive", name, d.Std())
		}
	}
	if a.MinDeployments < 1 {
		t.Errorf("alerts.min_deployments = %d", a.MinDeployments)
	}
	if !(a.RateLimitLowRatio > 0 && a.RateLimitLowRatio < 1) {
		t.Errorf("alerts.rate_limit_low_ratio = %v is not strictly between 0 and 1", a.RateLimitLowRatio)
	}
}
