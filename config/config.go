// Package config reads the exporter's YAML configuration file (--config.file): how builds are
// classified into deployments, which SLO objectives apply, and the thresholds the alert rules
// use. Decoding is strict: an unknown key is an error naming the key and its line, so a typo never
// silently falls back to a default. Every problem of a file is reported at once, as an *Error
// listing each with its line and key, in words rather than Go type names.
package config

import (
	"errors"
	"fmt"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/common/model"
	"go.yaml.in/yaml/v3"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/suggest"
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

// UnmarshalYAML implements yaml.Unmarshaler. Its errors are *yaml.TypeError, so that decoding
// goes on and the other problems of the file are reported too.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return nodeError(n, "expected a duration such as 30s, 15m, 2h or 7d, got %s", describeNode(n))
	}
	v, err := model.ParseDuration(n.Value)
	if err != nil {
		return nodeError(n, "%q is not a duration (use e.g. 30s, 15m, 2h, 7d)", n.Value)
	}
	*d = Duration(v)
	return nil
}

// nodeError is the error of an UnmarshalYAML method of this package: a *yaml.TypeError, so that
// decoding goes on, whose text carries the node's column too, so that Parse can name its key.
func nodeError(n *yaml.Node, format string, args ...any) error {
	return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: column %d: ", n.Line, n.Column) + fmt.Sprintf(format, args...)}}
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
	// KeepPeopleAndNotes keeps, with each deployment record, who deployed it (the deployed_by
	// meta-data, else the build creator's name) and the release-notes field of its block step.
	// Off by default: user names are personal data. --deployments.keep-people-and-notes sets it
	// too. Shown on /status and in the report, never as metric labels.
	KeepPeopleAndNotes bool   `yaml:"keep_people_and_notes"`
	SLOs               SLOs   `yaml:"slos"`
	Alerts             Alerts `yaml:"alerts"`
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
	// WebhooksSilentAfter: with webhooks configured, deployments were counted but no webhook
	// delivery was accepted for this long.
	WebhooksSilentAfter Duration `yaml:"webhooks_silent_after"`
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
			WebhooksSilentAfter:   Duration(time.Hour),
		},
	}
}

// Load reads and validates the file at path; "" returns Default(). A file that does not
// validate returns an *Error naming the file and listing every problem.
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
		var e *Error
		if errors.As(err, &e) {
			e.File = path
			return nil, e
		}
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// Problem is one thing wrong with a configuration file.
type Problem struct {
	// Line is the 1-based line of the offending key or value; 0 when the problem is not tied to
	// a line of the file.
	Line int
	// Key is the dotted path of the offending key, e.g. "slos.objectives.production.success" or
	// "slos.overrides[0]"; "" when the problem concerns the whole file.
	Key string
	// Message says what is wrong and, where it helps, how to fix it. It never names Go types.
	Message string
}

// String is "line 3: slos.window: must be positive".
func (p Problem) String() string {
	var b strings.Builder
	if p.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", p.Line)
	}
	if p.Key != "" {
		b.WriteString(p.Key + ": ")
	}
	b.WriteString(p.Message)
	return b.String()
}

// Error is every problem found in one configuration file, ordered by line.
type Error struct {
	// File is the path given to Load; "" for Parse.
	File     string
	Problems []Problem
}

// Error joins the problems on one line, for a log line; show Problems one per line to a person.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString("config file " + e.File + ": ")
	}
	if len(e.Problems) != 1 {
		fmt.Fprintf(&b, "%d problems: ", len(e.Problems))
	}
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	return b.String()
}

// Parse decodes and validates a YAML document. Keys not given keep their defaults, except
// slos.objectives, which replaces the default table as a whole when present. An invalid document
// returns an *Error with every problem found: unknown keys, values of the wrong kind, bad
// durations and values out of range, each with its line.
func Parse(b []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, &Error{Problems: []Problem{syntaxProblem(err)}}
	}
	c := Default()
	// Objectives given in the file replace the defaults rather than merge into them, so that a
	// file can drop the production objective.
	c.SLOs.Objectives = nil
	var problems []Problem
	idx := newNodeIndex(&doc)
	if len(doc.Content) > 0 {
		root := doc.Content[0]
		problems = append(problems, unknownKeys(root, reflect.TypeOf(*c), "")...)
		// Node.Decode is not strict about keys: unknownKeys has reported those, with a suggestion.
		if err := root.Decode(c); err != nil {
			var te *yaml.TypeError
			if !errors.As(err, &te) {
				return nil, &Error{Problems: []Problem{{Message: "not a valid configuration: " + strings.TrimPrefix(err.Error(), "yaml: ")}}}
			}
			for _, msg := range te.Errors {
				problems = append(problems, idx.typeProblem(msg))
			}
		}
	}
	if c.SLOs.Objectives == nil {
		c.SLOs.Objectives = Default().SLOs.Objectives
	}
	undecoded := map[string]bool{}
	for _, p := range problems {
		if p.Key != "" {
			undecoded[p.Key] = true
		}
	}
	for _, p := range c.validate() {
		if undecoded[p.Key] {
			continue // the decoding problem says it already; the value left behind is meaningless
		}
		if p.Line == 0 {
			p.Line = idx.lines[p.Key]
		}
		problems = append(problems, p)
	}
	if len(problems) > 0 {
		sort.SliceStable(problems, func(i, j int) bool {
			a, b := problems[i], problems[j]
			if a.Line != b.Line {
				return a.Line < b.Line
			}
			return a.Key < b.Key
		})
		return nil, &Error{Problems: problems}
	}
	return c, nil
}

// validate checks the values and normalises the environment names, returning every problem.
func (c *Config) validate() []Problem {
	var ps []Problem
	bad := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
	}
	c.DefaultEnvironment = strings.ToLower(strings.TrimSpace(c.DefaultEnvironment))
	if c.DefaultEnvironment == "" {
		bad("default_environment", "must not be empty; name the environment of builds that name none, e.g. production")
	}
	aliases := make(map[string]string, len(c.EnvironmentAliases))
	for raw, target := range c.EnvironmentAliases {
		k, v := strings.ToLower(strings.TrimSpace(raw)), strings.ToLower(strings.TrimSpace(target))
		if k == "" || v == "" {
			bad("environment_aliases."+raw, "neither the name nor its target may be empty (got %q: %q)", raw, target)
			continue
		}
		aliases[k] = v
	}
	c.EnvironmentAliases = aliases
	c.DefaultEnvironment = c.NormalizeEnvironment(c.DefaultEnvironment)
	switch c.ApprovalTiming {
	case ApprovalTimingSeenBlocked, ApprovalTimingAll, ApprovalTimingOff:
	default:
		bad("approval_timing", "%q is not one of seen_blocked, all, off", c.ApprovalTiming)
	}
	if c.AwaitingApprovalMaxAge <= 0 {
		bad("awaiting_approval_max_age", "must be positive")
	}
	th := c.SLOs.DurationThreshold.Std().Seconds()
	if !slices.Contains(DurationBuckets, th) {
		bounds := make([]string, len(DurationBuckets))
		for i, s := range DurationBuckets {
			bounds[i] = model.Duration(time.Duration(s) * time.Second).String()
		}
		bad("slos.duration_threshold", "%s is not a bucket of buildkite_deployment_duration_seconds; use one of %s",
			model.Duration(c.SLOs.DurationThreshold), strings.Join(bounds, ", "))
	}
	if c.SLOs.Window <= 0 {
		bad("slos.window", "must be positive")
	}
	objectives := make(map[string]Objective, len(c.SLOs.Objectives))
	for env, o := range c.SLOs.Objectives {
		ps = append(ps, checkRatios("slos.objectives."+env, o.Success, o.Duration)...)
		objectives[c.NormalizeEnvironment(env)] = o
	}
	c.SLOs.Objectives = objectives
	for i := range c.SLOs.Overrides {
		o := &c.SLOs.Overrides[i]
		where := fmt.Sprintf("slos.overrides[%d]", i)
		if (o.Component == "") == (o.Owner == "") {
			bad(where, "set exactly one of component or owner")
		}
		if o.Success == nil && o.Duration == nil {
			bad(where, "set success or duration")
		}
		ps = append(ps, checkRatios(where, o.Success, o.Duration)...)
		if o.Environment != "" {
			o.Environment = c.NormalizeEnvironment(o.Environment)
		}
	}
	a := c.Alerts
	for _, d := range []struct {
		name string
		v    Duration
	}{
		{"failing_for", a.FailingFor}, {"slow_threshold", a.SlowThreshold}, {"stuck_after", a.StuckAfter},
		{"awaiting_approval_after", a.AwaitingApprovalAfter}, {"polling_stale_after", a.PollingStaleAfter},
		{"webhooks_silent_after", a.WebhooksSilentAfter},
	} {
		if d.v <= 0 {
			bad("alerts."+d.name, "must be positive")
		}
	}
	if a.MinDeployments < 1 {
		bad("alerts.min_deployments", "must be at least 1")
	}
	if !(a.RateLimitLowRatio > 0 && a.RateLimitLowRatio < 1) { // NaN fails too
		bad("alerts.rate_limit_low_ratio", "%v must be between 0 and 1", a.RateLimitLowRatio)
	}
	return ps
}

func checkRatios(where string, rs ...*float64) []Problem {
	var ps []Problem
	for i, r := range rs {
		if r != nil && !(*r > 0 && *r < 1) { // NaN fails too
			ps = append(ps, Problem{Key: where + "." + []string{"success", "duration"}[i],
				Message: fmt.Sprintf("%v must be between 0 and 1 (exclusive), e.g. 0.95", *r)})
		}
	}
	return ps
}

var yamlLineRE = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)

// syntaxProblem turns a YAML syntax error into a Problem with its line.
func syntaxProblem(err error) Problem {
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return Problem{Line: line, Message: "not valid YAML: " + m[2]}
	}
	return Problem{Message: "not valid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// indexed is a node of the document with the dotted path of the value it is or holds.
type indexed struct {
	node *yaml.Node
	path string
}

// nodeIndex finds the key path of a decoding error, which yaml reports by line only.
type nodeIndex struct {
	values []indexed      // every value node (the root, mapping values, sequence items)
	keys   []indexed      // every mapping key node, with the path of its value
	lines  map[string]int // path -> line of its key (of the item for sequence items)
}

func newNodeIndex(doc *yaml.Node) *nodeIndex {
	idx := &nodeIndex{lines: map[string]int{}}
	if len(doc.Content) > 0 {
		idx.walk(doc.Content[0], "")
	}
	return idx
}

func (idx *nodeIndex) walk(n *yaml.Node, path string) {
	idx.values = append(idx.values, indexed{n, path})
	switch n.Kind {
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := joinKey(path, k.Value)
			idx.keys = append(idx.keys, indexed{k, p})
			if _, seen := idx.lines[p]; !seen {
				idx.lines[p] = k.Line
			}
			idx.walk(v, p)
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			idx.lines[p] = item.Line
			idx.walk(item, p)
		}
	}
}

func joinKey(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

var (
	cannotUnmarshalRE = regexp.MustCompile(`^cannot unmarshal (!!\w+)(?: ` + "`[^`]*`" + `)? into (\S+)$`)
	definedTwiceRE    = regexp.MustCompile(`^mapping key "((?:[^"\\]|\\.)*)" already defined at line (\d+)$`)
	alreadySetRE      = regexp.MustCompile(`^field (\S+) already set in type \S+$`)
	goTypeRE          = regexp.MustCompile(` (?:in type|into) \S+`)
	columnRE          = regexp.MustCompile(`^column (\d+): (.*)$`)
)

// typeProblem turns one of yaml's TypeError lines ("line 4: cannot unmarshal !!str `abc` into
// int") into a Problem naming the key and saying what was expected in words.
func (idx *nodeIndex) typeProblem(msg string) Problem {
	m := yamlLineRE.FindStringSubmatch(msg)
	if m == nil {
		return Problem{Message: goTypeRE.ReplaceAllString(msg, "")}
	}
	line, _ := strconv.Atoi(m[1])
	rest := m[2]
	p := Problem{Line: line}
	if u := cannotUnmarshalRE.FindStringSubmatch(rest); u != nil {
		n := idx.valueAt(line, func(n *yaml.Node) bool { return n.ShortTag() == u[1] })
		got := "a " + strings.TrimPrefix(u[1], "!!") + " value"
		if n != nil {
			p.Key = n.path
			got = describeNode(n.node)
		}
		if p.Key == "" {
			p.Message = "the file must be a mapping of keys (like default_environment: production), not " + got
		} else {
			p.Message = "expected " + expected(u[2]) + ", got " + got
		}
		return p
	}
	if d := definedTwiceRE.FindStringSubmatch(rest); d != nil {
		key, _ := strconv.Unquote(`"` + d[1] + `"`)
		p.Key = idx.keyAt(line, key)
		p.Message = "defined twice (first at line " + d[2] + "); keep one"
		return p
	}
	if d := alreadySetRE.FindStringSubmatch(rest); d != nil {
		p.Key = idx.keyAt(line, d[1])
		p.Message = "set twice; keep one"
		return p
	}
	// Messages of our own UnmarshalYAML methods (nodeError) name the column.
	if c := columnRE.FindStringSubmatch(rest); c != nil {
		col, _ := strconv.Atoi(c[1])
		rest = c[2]
		if n := idx.valueAt(line, func(n *yaml.Node) bool { return n.Column == col }); n != nil {
			p.Key = n.path
		}
	}
	p.Message = goTypeRE.ReplaceAllString(rest, "")
	return p
}

// valueAt returns the value node on line that matches (the only one on that line when none
// matches), nil when the line holds no value.
func (idx *nodeIndex) valueAt(line int, match func(*yaml.Node) bool) *indexed {
	var onLine []indexed
	for _, v := range idx.values {
		if v.node.Line == line && v.node.Kind != yaml.DocumentNode {
			onLine = append(onLine, v)
		}
	}
	for i := range onLine {
		if match(onLine[i].node) {
			return &onLine[i]
		}
	}
	if len(onLine) == 1 {
		return &onLine[0]
	}
	return nil
}

func (idx *nodeIndex) keyAt(line int, key string) string {
	for _, k := range idx.keys {
		if k.node.Line == line && k.node.Value == key {
			return k.path
		}
	}
	return ""
}

// expected names, for a person, what a Go type of this package accepts.
func expected(goType string) string {
	switch {
	case strings.HasPrefix(goType, "[]"):
		return "a list"
	case strings.HasPrefix(goType, "map["), strings.HasPrefix(goType, "config."):
		return "a mapping of keys (key: value)"
	case strings.Contains(goType, "int"):
		return "a whole number"
	case strings.Contains(goType, "float"):
		return "a number"
	case strings.Contains(goType, "bool"):
		return "true or false"
	case strings.Contains(goType, "string"):
		return "a text value"
	}
	return "another kind of value"
}

// describeNode says what a node holds, for "expected X, got Y".
func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	}
	if n.ShortTag() == "!!null" {
		return "nothing"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:37] + "..."
	}
	return strconv.Quote(v)
}

var unmarshalerType = reflect.TypeOf((*yaml.Unmarshaler)(nil)).Elem()

// unknownKeys reports every mapping key of n that the type t does not define, with the closest
// defined key as a suggestion. Values of the wrong kind are left to the decoder.
func unknownKeys(n *yaml.Node, t reflect.Type, path string) []Problem {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	var ps []Problem
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" || !f.IsExported() {
				continue
			}
			fields[name] = f.Type
			names = append(names, name)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				continue // a merge key; its contents are checked where they are defined
			}
			p := joinKey(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				ps = append(ps, Problem{Line: k.Line, Key: p, Message: unknownKeyMessage(k.Value, names)})
				continue
			}
			ps = append(ps, unknownKeys(v, ft, p)...)
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return nil
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			ps = append(ps, unknownKeys(n.Content[i+1], t.Elem(), joinKey(path, n.Content[i].Value))...)
		}
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return nil
		}
		for i, item := range n.Content {
			ps = append(ps, unknownKeys(item, t.Elem(), fmt.Sprintf("%s[%d]", path, i))...)
		}
	}
	return ps
}

func unknownKeyMessage(key string, known []string) string {
	msg := "unknown key"
	if s := suggest.Closest(key, known); s != "" {
		msg += fmt.Sprintf(" (did you mean %q?)", s)
	}
	return msg + "; the keys here are " + strings.Join(known, ", ")
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
