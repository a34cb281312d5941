// Package config reads the exporter's YAML configuration file (--config.file): how builds are
// classified into deployments, which SLO objectives apply, and the thresholds the alert rules
// use. Decoding is strict: an unknown key is an error naming the key and its line, so a typo never
// silently falls back to a default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"
)

// DurationBuckets are the upper bounds, in seconds, of buildkite_deployment_duration_seconds. They
// live here because slos.duration_threshold must be one of them: the duration SLI is read from the
// bucket whose le equals the threshold.
var DurationBuckets = []float64{60, 300, 600, 900, 1800, 3600}

// Environment names the built-in alias table normalises to.
const (
	Production  = "production"
	Staging     = "staging"
	Development = "development"
)

// builtinAliases is the alias table of DESIGN.md; the file's environment_aliases are merged over it.
var builtinAliases = map[string]string{
	"production":  Production,
	"prod":        Production,
	"prd":         Production,
	"live":        Production,
	"staging":     Staging,
	"stage":       Staging,
	"stg":         Staging,
	"development": Development,
	"dev":         Development,
	"develop":     Development,
}

// Approval timing modes: which finished deployments get their block-step wait measured.
const (
	// ApprovalTimingSeenBlocked lists the first start's backfill with jobs (no extra requests),
	// then fetches the jobs of a finished build only if an earlier poll saw it blocked: one extra
	// request per approved deployment, none for the others.
	ApprovalTimingSeenBlocked = "seen_blocked"
	// ApprovalTimingAll lists finished builds with their jobs (bigger pages, no extra requests),
	// so backfilled deployments are timed too.
	ApprovalTimingAll = "all"
	// ApprovalTimingOff never measures approval wait.
	ApprovalTimingOff = "off"
)

// Duration is a time.Duration written the Prometheus way: "30s", "15m", "2h", "7d", "4w".
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := model.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. 30s, 15m, 2h, 7d): %w", n.Line, s, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML implements yaml.Marshaler.
func (d Duration) MarshalYAML() (any, error) { return model.Duration(d).String(), nil }

// Std returns d as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }

// Config is the whole file. Zero fields are filled from Default.
type Config struct {
	// DefaultEnvironment is the environment of a deployment whose build names none (rule 4).
	DefaultEnvironment string `yaml:"default_environment"`
	// EnvironmentAliases map a lower-case name to its canonical environment, merged over the
	// built-in table (prod, prd, live → production; stage, stg → staging; dev, develop → development).
	EnvironmentAliases map[string]string `yaml:"environment_aliases"`
	// ApprovalTiming is seen_blocked (default), all or off.
	ApprovalTiming string `yaml:"approval_timing"`
	// AwaitingApprovalMaxAge drops builds blocked longer than this from the awaiting-approval
	// gauge: abandoned gates should not page anybody forever.
	AwaitingApprovalMaxAge Duration `yaml:"awaiting_approval_max_age"`
	// CommitTimeMetaDataKey optionally names a build meta-data key holding the commit time
	// (RFC 3339 or Unix seconds); lead time then counts from it instead of the commit's first build.
	CommitTimeMetaDataKey string `yaml:"commit_time_meta_data_key"`
	SLOs                  SLOs   `yaml:"slos"`
	Alerts                Alerts `yaml:"alerts"`
}

// SLOs are the deployment service-level objectives.
type SLOs struct {
	// DurationThreshold is how fast a deployment must finish to count as good for the duration
	// SLO; it must be one of DurationBuckets.
	DurationThreshold Duration `yaml:"duration_threshold"`
	Window            Duration `yaml:"window"`
	// Objectives by (canonical) environment name.
	Objectives map[string]Objective `yaml:"objectives"`
	// Overrides replace the objectives of one component or of every component of one owner;
	// the first matching override wins, a component match before an owner match.
	Overrides []Override `yaml:"overrides"`
}

// Objective is a pair of target ratios; a nil one means no objective of that kind.
type Objective struct {
	Success  *float64 `yaml:"success"`
	Duration *float64 `yaml:"duration"`
}

// Override sets objectives for a component or an owner, in one environment or (empty) all.
type Override struct {
	Component   string   `yaml:"component"`
	Owner       string   `yaml:"owner"`
	Environment string   `yaml:"environment"`
	Success     *float64 `yaml:"success"`
	Duration    *float64 `yaml:"duration"`
}

// Alerts are thresholds of the generated alert rules (the rules subcommand).
type Alerts struct {
	FailingFor            Duration `yaml:"failing_for"`
	SlowThreshold         Duration `yaml:"slow_threshold"`
	StuckAfter            Duration `yaml:"stuck_after"`
	AwaitingApprovalAfter Duration `yaml:"awaiting_approval_after"`
	MinDeployments        int      `yaml:"min_deployments"`
	PollingStaleAfter     Duration `yaml:"polling_stale_after"`
	RateLimitLowRatio     float64  `yaml:"rate_limit_low_ratio"`
}

func ratio(v float64) *float64 { return &v }

// Default returns the configuration used when no file is given.
func Default() *Config {
	return &Config{
		DefaultEnvironment:     Production,
		EnvironmentAliases:     map[string]string{},
		ApprovalTiming:         ApprovalTimingSeenBlocked,
		AwaitingApprovalMaxAge: Duration(7 * 24 * time.Hour),
		SLOs: SLOs{
			DurationThreshold: Duration(15 * time.Minute),
			Window:            Duration(28 * 24 * time.Hour),
			Objectives: map[string]Objective{
				Production: {Success: ratio(0.95), Duration: ratio(0.90)},
			},
		},
		Alerts: Alerts{
			FailingFor:            Duration(15 * time.Minute),
			SlowThreshold:         Duration(30 * time.Minute),
			StuckAfter:            Duration(2 * time.Hour),
			AwaitingApprovalAfter: Duration(24 * time.Hour),
			MinDeployments:        3,
			PollingStaleAfter:     Duration(10 * time.Minute),
			RateLimitLowRatio:     0.1,
		},
	}
}

// Load reads and validates the file at path; "" returns Default().
func Load(path string) (*Config, error) {
	if path == "" {
		return Default(), nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading config file: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// Parse decodes and validates a YAML document. Keys not given keep their defaults, except
// slos.objectives, which replaces the default table as a whole when present.
func Parse(b []byte) (*Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	// Objectives given in the file replace the defaults rather than merge into them, so that a
	// file can drop the production objective.
	c.SLOs.Objectives = nil
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		return nil, err
	}
	if c.SLOs.Objectives == nil {
		c.SLOs.Objectives = Default().SLOs.Objectives
	}
	if err := c.validate(); err != nil {
		return nil, err
	}
	return c, nil
}

func (c *Config) validate() error {
	c.DefaultEnvironment = strings.ToLower(strings.TrimSpace(c.DefaultEnvironment))
	if c.DefaultEnvironment == "" {
		return errors.New("default_environment must not be empty")
	}
	aliases := make(map[string]string, len(c.EnvironmentAliases))
	for k, v := range c.EnvironmentAliases {
		k, v = strings.ToLower(strings.TrimSpace(k)), strings.ToLower(strings.TrimSpace(v))
		if k == "" || v == "" {
			return fmt.Errorf("environment_aliases: %q: %q: neither name nor target may be empty", k, v)
		}
		aliases[k] = v
	}
	c.EnvironmentAliases = aliases
	c.DefaultEnvironment = c.NormalizeEnvironment(c.DefaultEnvironment)
	switch c.ApprovalTiming {
	case ApprovalTimingSeenBlocked, ApprovalTimingAll, ApprovalTimingOff:
	default:
		return fmt.Errorf("approval_timing: %q is not one of seen_blocked, all, off", c.ApprovalTiming)
	}
	if c.AwaitingApprovalMaxAge <= 0 {
		return errors.New("awaiting_approval_max_age must be positive")
	}
	th := c.SLOs.DurationThreshold.Std().Seconds()
	if !slices.Contains(DurationBuckets, th) {
		return fmt.Errorf("slos.duration_threshold: %s is not a bucket of buildkite_deployment_duration_seconds (seconds: %v)", c.SLOs.DurationThreshold.Std(), DurationBuckets)
	}
	if c.SLOs.Window <= 0 {
		return errors.New("slos.window must be positive")
	}
	objectives := make(map[string]Objective, len(c.SLOs.Objectives))
	for env, o := range c.SLOs.Objectives {
		if err := checkRatios("slos.objectives."+env, o.Success, o.Duration); err != nil {
			return err
		}
		objectives[c.NormalizeEnvironment(env)] = o
	}
	c.SLOs.Objectives = objectives
	for i := range c.SLOs.Overrides {
		o := &c.SLOs.Overrides[i]
		where := fmt.Sprintf("slos.overrides[%d]", i)
		if (o.Component == "") == (o.Owner == "") {
			return fmt.Errorf("%s: set exactly one of component or owner", where)
		}
		if o.Success == nil && o.Duration == nil {
			return fmt.Errorf("%s: set success or duration", where)
		}
		if err := checkRatios(where, o.Success, o.Duration); err != nil {
			return err
		}
		if o.Environment != "" {
			o.Environment = c.NormalizeEnvironment(o.Environment)
		}
	}
	a := c.Alerts
	for name, d := range map[string]Duration{
		"failing_for": a.FailingFor, "slow_threshold": a.SlowThreshold, "stuck_after": a.StuckAfter,
		"awaiting_approval_after": a.AwaitingApprovalAfter, "polling_stale_after": a.PollingStaleAfter,
	} {
		if d <= 0 {
			return fmt.Errorf("alerts.%s must be positive", name)
		}
	}
	if a.MinDeployments < 1 {
		return errors.New("alerts.min_deployments must be at least 1")
	}
	if a.RateLimitLowRatio <= 0 || a.RateLimitLowRatio >= 1 {
		return fmt.Errorf("alerts.rate_limit_low_ratio: %v must be between 0 and 1", a.RateLimitLowRatio)
	}
	return nil
}

func checkRatios(where string, rs ...*float64) error {
	for i, r := range rs {
		if r != nil && (*r <= 0 || *r >= 1) {
			return fmt.Errorf("%s.%s: %v must be between 0 and 1 (exclusive)", where, []string{"success", "duration"}[i], *r)
		}
	}
	return nil
}

// NormalizeEnvironment lower-cases name and resolves it through the alias table.
func (c *Config) NormalizeEnvironment(name string) string {
	n := strings.ToLower(strings.TrimSpace(name))
	if v, ok := c.EnvironmentAliases[n]; ok {
		return v
	}
	if v, ok := builtinAliases[n]; ok {
		return v
	}
	return n
}

// KnownEnvironment reports whether name (any case) is in the alias table, as a name or a target,
// or is the default environment.
func (c *Config) KnownEnvironment(name string) bool {
	n := strings.ToLower(strings.TrimSpace(name))
	if n == c.DefaultEnvironment {
		return true
	}
	for _, t := range []map[string]string{c.EnvironmentAliases, builtinAliases} {
		if _, ok := t[n]; ok {
			return true
		}
		for _, v := range t {
			if v == n {
				return true
			}
		}
	}
	return false
}

// SLO names, the values of the slo label.
const (
	SLOSuccess  = "success"
	SLODuration = "duration"
)

// ObjectivesFor returns the objectives that apply to a component of owner in environment, by
// SLO name; an SLO without objective is absent.
func (c *Config) ObjectivesFor(component, owner, environment string) map[string]float64 {
	out := map[string]float64{}
	o := c.SLOs.Objectives[environment]
	set := func(s, d *float64) {
		if s != nil {
			out[SLOSuccess] = *s
		}
		if d != nil {
			out[SLODuration] = *d
		}
	}
	set(o.Success, o.Duration)
	// Owner overrides apply first so that a component override wins over its owner's.
	for _, byComponent := range []bool{false, true} {
		for _, ov := range c.SLOs.Overrides {
			if ov.Environment != "" && ov.Environment != environment {
				continue
			}
			if byComponent && ov.Component == component || !byComponent && ov.Owner != "" && ov.Owner == owner {
				set(ov.Success, ov.Duration)
				break
			}
		}
	}
	return out
}
