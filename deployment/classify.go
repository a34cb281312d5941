package deployment

import (
	"maps"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
)

// target is one environment a build deploys to, with the version it deploys there.
type target struct {
	Environment string
	Version     string
	// Unknown is set when the environment name is not in the alias table; it is kept as written
	// (lower-cased) and reported.
	Unknown bool
	// Fallback is set when the build names no environment in its meta-data, so the pipeline
	// slug or the default environment was used.
	Fallback bool
}

// Classifier turns builds into deployment records and live gauges, following DESIGN.md "What
// counts as a deployment". It holds no state and does no I/O: the same builds give the same
// records, whoever classifies them and whenever.
type Classifier struct{ cfg *config.Config }

// NewClassifier classifies by cfg (nil: config.Default()).
func NewClassifier(cfg *config.Config) Classifier {
	if cfg == nil {
		cfg = config.Default()
	}
	return Classifier{cfg}
}

// outcomeState maps a build state to a deployment state; ok is false for builds that are not
// finished deployments (running, blocked, skipped, not_run).
func outcomeState(b *buildkite.Build) (string, bool) {
	if !b.Finished() {
		return "", false
	}
	switch b.State {
	case buildkite.StatePassed, buildkite.StateFailed, buildkite.StateCanceled:
		return b.State, true
	}
	return "", false
}

// targets returns the environments build b of pipelineSlug deploys to; first rule that matches wins:
// meta-data environment, then <app>:<env>:deployed keys, then a token of the slug, then the
// default environment. Never empty. For finished builds finishedTargets adds the annotation
// rule (3, before the slug) and the pin of committed outcomes; open builds, whose annotations
// are not read, use this alone.
func (c Classifier) targets(b *buildkite.Build, pipelineSlug string) []target {
	md := b.MetaData
	if raw := strings.TrimSpace(md["environment"]); raw != "" {
		return []target{c.target(raw, c.version(md, b, "", raw))}
	}
	var out []target
	for _, k := range slices.Sorted(maps.Keys(md)) {
		app, env, ok := parseDeployedKey(k)
		if !ok || !truthy(md[k]) {
			continue
		}
		t := c.target(env, c.version(md, b, app, env))
		// Two apps of one build deploying to the same environment are one deployment there.
		if !slices.ContainsFunc(out, func(o target) bool { return o.Environment == t.Environment }) {
			out = append(out, t)
		}
	}
	if len(out) > 0 {
		return out
	}
	env := c.SlugEnvironment(pipelineSlug)
	if env == "" {
		env = c.cfg.DefaultEnvironment
	}
	t := c.target(env, c.version(md, b, "", env))
	t.Fallback = true
	return []target{t}
}

func (c Classifier) target(raw, version string) target {
	return target{
		Environment: labelValue(c.cfg.NormalizeEnvironment(raw)),
		Version:     labelValue(version),
		Unknown:     !c.cfg.KnownEnvironment(raw),
	}
}

// maxLabelLen caps label values that come from build meta-data, which may hold up to 100 KB.
const maxLabelLen = 128

// labelValue makes build data safe as a label value: valid UTF-8 (a const metric with invalid
// UTF-8 would panic) and at most maxLabelLen bytes, cut on a character boundary.
func labelValue(s string) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= maxLabelLen {
		return s
	}
	cut := maxLabelLen
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}

// SlugEnvironment finds a known environment name among the slug's tokens, the last one first
// (my-service-deploy-prod, dev-tools-prod-deploy → production).
func (c Classifier) SlugEnvironment(slug string) string {
	tokens := strings.FieldsFunc(strings.ToLower(slug), func(r rune) bool { return r == '-' || r == '_' || r == '.' })
	for i := len(tokens) - 1; i >= 0; i-- {
		if c.cfg.KnownEnvironment(tokens[i]) {
			return tokens[i]
		}
	}
	return ""
}

// version returns the deployed version, most specific source first: <app>:<env>:version,
// <env>:version (as written, then normalised), version, else the build's tag.
func (c Classifier) version(md map[string]string, b *buildkite.Build, app, rawEnv string) string {
	var keys []string
	norm := c.cfg.NormalizeEnvironment(rawEnv)
	if app != "" {
		keys = append(keys, app+":"+rawEnv+":version")
	}
	keys = append(keys, rawEnv+":version", norm+":version", "version")
	for _, k := range keys {
		if v := strings.TrimSpace(md[k]); v != "" {
			return v
		}
	}
	if b.Tag != nil {
		return *b.Tag
	}
	return ""
}

// parseDeployedKey splits "<app>:<env>:deployed".
func parseDeployedKey(k string) (app, env string, ok bool) {
	parts := strings.Split(k, ":")
	if len(parts) != 3 || parts[2] != "deployed" || parts[0] == "" || strings.TrimSpace(parts[1]) == "" {
		return "", "", false
	}
	return parts[0], parts[1], true
}

func truthy(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "true", "1", "yes", "y", "on":
		return true
	}
	return false
}

// MetaDataEnvironments returns the environment names a build's meta-data gives, as written and
// before the alias table: the environment key, else every <app>:<env>:deployed key with a true
// value, in key order (rules 1 and 2 of what counts as a deployment). Empty: the build names no
// environment, and the slug or the default environment applies.
func MetaDataEnvironments(md map[string]string) []string {
	if env := strings.TrimSpace(md["environment"]); env != "" {
		return []string{env}
	}
	var out []string
	for _, k := range slices.Sorted(maps.Keys(md)) {
		if _, env, ok := parseDeployedKey(k); ok && truthy(md[k]) {
			out = append(out, env)
		}
	}
	return out
}
