package alerts

import (
	"bufio"
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// wantAlerts are the alerts the issue asks for, with their severities.
var wantAlerts = map[string]string{
	"BuildkiteDeploymentFailed":               "info",
	"BuildkiteDeploymentFailing":              "warning",
	"BuildkiteDeploymentSlow":                 "warning",
	"BuildkiteDeploymentStuck":                "warning",
	"BuildkiteDeploymentAwaitingApproval":     "warning",
	"BuildkiteDeploymentSuccessBudgetBurn":    "warning",
	"BuildkiteDeploymentDurationBudgetBurn":   "warning",
	"BuildkiteDeploymentErrorBudgetExhausted": "info",
	"BuildkiteExporterDown":                   "warning",
	"BuildkiteExporterPollingStale":           "warning",
	"BuildkiteExporterAPIErrors":              "warning",
	"BuildkiteExporterRateLimitLow":           "warning",
	"BuildkiteExporterTokenMissingScopes":     "warning",
	"BuildkiteExporterCatalogErrors":          "warning",
	"BuildkiteExporterWebhooksSilent":         "warning",
}

// ruleGroups is the rule file schema of Prometheus 2.42, decoded strictly: a field 2.42 does not
// know (group labels, query_offset) fails the decode, as it fails Prometheus 2.42.
type ruleGroups struct {
	Groups []struct {
		Name     string         `yaml:"name"`
		Interval model.Duration `yaml:"interval,omitempty"`
		Limit    int            `yaml:"limit,omitempty"`
		Rules    []struct {
			Record        string            `yaml:"record,omitempty"`
			Alert         string            `yaml:"alert,omitempty"`
			Expr          string            `yaml:"expr"`
			For           model.Duration    `yaml:"for,omitempty"`
			KeepFiringFor model.Duration    `yaml:"keep_firing_for,omitempty"`
			Labels        map[string]string `yaml:"labels,omitempty"`
			Annotations   map[string]string `yaml:"annotations,omitempty"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

// parseRules decodes a rule file strictly and parses every expression. (promtool, run by
// alerts/test.sh, also checks the annotation templates.)
func parseRules(t *testing.T, b []byte) *ruleGroups {
	t.Helper()
	var rgs ruleGroups
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&rgs); err != nil {
		t.Fatalf("rule file does not decode strictly: %v", err)
	}
	p := parser.NewParser(parser.Options{})
	names := map[string]bool{}
	for _, g := range rgs.Groups {
		if names[g.Name] {
			t.Errorf("duplicate group %s", g.Name)
		}
		names[g.Name] = true
		for _, r := range g.Rules {
			if (r.Record == "") == (r.Alert == "") {
				t.Errorf("group %s: rule needs exactly one of record and alert: %+v", g.Name, r)
			}
			if _, err := p.ParseExpr(r.Expr); err != nil {
				t.Errorf("%s%s: %v\n%s", r.Record, r.Alert, err, r.Expr)
			}
		}
	}
	if len(rgs.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	return &rgs
}

// leEquals finds an le label matched by equality, which breaks on 3.x.
var leEquals = regexp.MustCompile(`\ble\s*=\s*"`)

func TestRenderedRulesFollowConventions(t *testing.T) {
	b, err := Render(DefaultParams())
	if err != nil {
		t.Fatal(err)
	}
	rgs := parseRules(t, b)
	runbook := runbookAnchors(t)
	seen := map[string]bool{}
	for _, g := range rgs.Groups {
		for _, r := range g.Rules {
			if leEquals.MatchString(r.Expr) {
				t.Errorf("%s%s: le must be matched by regex (3.x writes 900.0): %s", r.Record, r.Alert, r.Expr)
			}
			if r.Alert == "" {
				continue
			}
			seen[r.Alert] = true
			if want, ok := wantAlerts[r.Alert]; !ok {
				t.Errorf("unexpected alert %s: add it to wantAlerts and the runbook", r.Alert)
			} else if r.Labels["severity"] != want {
				t.Errorf("%s: severity %q, want %q", r.Alert, r.Labels["severity"], want)
			}
			for _, a := range []string{"summary", "description", "runbook_url"} {
				if r.Annotations[a] == "" {
					t.Errorf("%s: no %s annotation", r.Alert, a)
				}
			}
			if s := r.Annotations["summary"]; strings.Contains(s, "{{") || !strings.HasSuffix(s, ".") {
				t.Errorf("%s: summary %q must be a static sentence ending with a period", r.Alert, s)
			}
			if want := DefaultRunbookURL + "#" + RunbookAnchor(r.Alert); r.Annotations["runbook_url"] != want {
				t.Errorf("%s: runbook_url %q, want %q", r.Alert, r.Annotations["runbook_url"], want)
			}
			if !runbook[RunbookAnchor(r.Alert)] {
				t.Errorf("%s: docs/runbook.md has no section %q", r.Alert, RunbookAnchor(r.Alert))
			}
			// Component alerts carry the owner for routing.
			if strings.HasPrefix(r.Alert, "BuildkiteDeployment") && !strings.Contains(r.Expr, "group_left (owner)") {
				t.Errorf("%s: component alert without the owner join", r.Alert)
			}
		}
	}
	for a := range wantAlerts {
		if !seen[a] {
			t.Errorf("alert %s missing", a)
		}
	}
}

// runbookAnchors returns the GitHub anchors of the runbook's headings.
func runbookAnchors(t *testing.T) map[string]bool {
	t.Helper()
	f, err := os.Open("../docs/runbook.md")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	anchors := map[string]bool{}
	s := bufio.NewScanner(f)
	for s.Scan() {
		if h, ok := strings.CutPrefix(s.Text(), "#"); ok {
			anchors[GitHubAnchor(strings.TrimLeft(h, "#"))] = true
		}
	}
	return anchors
}

func TestRenderHonoursParams(t *testing.T) {
	p := DefaultParams()
	p.RunbookURL = "https://wiki.example.org/runbooks/buildkite.md"
	p.ExporterSelector = `job="bk", env="prod"`
	p.ProductionEnvironments = "production|live-eu"
	p.FailingFor = 2 * time.Second
	p.SlowThreshold = 45 * time.Minute
	p.StuckAfter = 3 * time.Hour
	p.AwaitingApprovalAfter = 12 * time.Hour
	p.MinDeployments = 5
	p.PollingStaleAfter = 20 * time.Minute
	p.RateLimitLowRatio = 0.25
	p.DurationThreshold = 10 * time.Minute
	p.SLOWindow = 30 * 24 * time.Hour
	p.SLOWindowInterval = time.Second
	p.ExporterDownFor = 3 * time.Second
	b, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	rgs := parseRules(t, b)
	exprs := map[string][]string{}
	fors := map[string]model.Duration{}
	for _, g := range rgs.Groups {
		if g.Name == "buildkite-deployments-slo-window.rules" && g.Interval != model.Duration(time.Second) {
			t.Errorf("SLO window group interval %s, want 1s", g.Interval)
		}
		for _, r := range g.Rules {
			name := r.Alert + r.Record
			exprs[name] = append(exprs[name], r.Expr)
			fors[name] = r.For
			if r.Alert != "" && !strings.HasPrefix(r.Annotations["runbook_url"], p.RunbookURL+"#") {
				t.Errorf("%s: runbook_url %q", r.Alert, r.Annotations["runbook_url"])
			}
		}
	}
	for _, c := range []struct{ rule, want string }{
		{"BuildkiteExporterDown", `up{job="bk", env="prod"} == 0`},
		{"BuildkiteDeploymentFailing", `environment=~"production|live-eu"`},
		{"BuildkiteDeploymentSlow", "> 2700"},
		{"BuildkiteDeploymentSlow", ">= 5"},
		{"BuildkiteDeploymentStuck", "> 10800"},
		{"BuildkiteDeploymentAwaitingApproval", "> 43200"},
		{"BuildkiteExporterPollingStale", "> 1200"},
		{"BuildkiteExporterRateLimitLow", "< 0.25"},
		{"BuildkiteDeploymentSuccessBudgetBurn", ">= 5"},
		{"BuildkiteDeploymentSuccessBudgetBurn", "> 3\n"},   // 10% of 30d in 1d
		{"BuildkiteDeploymentSuccessBudgetBurn", "> 1\n"},   // 10% of 30d in 3d
		{"BuildkiteDeploymentErrorBudgetExhausted", ">= 5"}, // guard
		{"component_environment_slo:buildkite_deployment_errors:increase2h", `le=~"600(\\.0)?"`},
		{"component_environment_slo:buildkite_deployment_errors:increase_slo_window", "[30d]"},
	} {
		if !slices.ContainsFunc(exprs[c.rule], func(e string) bool { return strings.Contains(e, c.want) }) {
			t.Errorf("%s: no expression contains %q:\n%s", c.rule, c.want, strings.Join(exprs[c.rule], "\n"))
		}
	}
	if got := fors["BuildkiteDeploymentFailing"]; got != model.Duration(2*time.Second) {
		t.Errorf("BuildkiteDeploymentFailing for %s, want 2s", got)
	}
	if got := fors["BuildkiteExporterDown"]; got != model.Duration(3*time.Second) {
		t.Errorf("BuildkiteExporterDown for %s, want 3s", got)
	}
}

func TestValidateNamesTheBadParameter(t *testing.T) {
	for _, c := range []struct {
		name   string
		mutate func(*Params)
		want   string
	}{
		{"relative runbook", func(p *Params) { p.RunbookURL = "docs/runbook.md" }, "runbook URL"},
		{"runbook with fragment", func(p *Params) { p.RunbookURL = DefaultRunbookURL + "#x" }, "runbook URL"},
		{"runbook with quote", func(p *Params) { p.RunbookURL = "https://example.org/it's" }, "runbook URL"},
		{"selector without quotes", func(p *Params) { p.ExporterSelector = "job=bk" }, "exporter selector"},
		{"selector injection", func(p *Params) { p.ExporterSelector = `job="bk"} or vector(1) or up{` }, "exporter selector"},
		{"bad environment regex", func(p *Params) { p.ProductionEnvironments = "prod(" }, "production environments"},
		{"zero failing_for", func(p *Params) { p.FailingFor = 0 }, "failing_for"},
		{"negative stuck_after", func(p *Params) { p.StuckAfter = -time.Hour }, "stuck_after"},
		{"sub-millisecond", func(p *Params) { p.ExporterDownFor = time.Microsecond }, "exporter down for"},
		{"threshold not whole seconds", func(p *Params) { p.DurationThreshold = 1500 * time.Millisecond }, "duration_threshold"},
		{"short window", func(p *Params) { p.SLOWindow = 24 * time.Hour }, "slos.window"},
		{"min deployments", func(p *Params) { p.MinDeployments = 0 }, "min_deployments"},
		{"ratio", func(p *Params) { p.RateLimitLowRatio = 1 }, "rate_limit_low_ratio"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := DefaultParams()
			c.mutate(&p)
			_, err := Render(p)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Render error %v, want one naming %q", err, c.want)
			}
		})
	}
	if err := DefaultParams().Validate(); err != nil {
		t.Fatalf("defaults invalid: %v", err)
	}
}

func TestGitHubAnchor(t *testing.T) {
	for in, want := range map[string]string{
		" BuildkiteDeploymentFailed":  "buildkitedeploymentfailed",
		"How to check: `up` & more!":  "how-to-check-up--more",
		"Tuning objectives (SLOs)":    "tuning-objectives-slos",
		"snake_case-and-dashes stay ": "snake_case-and-dashes-stay",
	} {
		if got := GitHubAnchor(in); got != want {
			t.Errorf("GitHubAnchor(%q) = %q, want %q", in, got, want)
		}
	}
}

// The example's routes send each kind of alert where alerts/README.md says they go.
func TestAlertmanagerExampleRoutes(t *testing.T) {
	var cfg struct {
		Receivers []struct {
			Name           string
			WebhookConfigs []struct {
				URL string `yaml:"url"`
			} `yaml:"webhook_configs"`
		}
	}
	if err := yaml.Unmarshal(AlertmanagerExample, &cfg); err != nil {
		t.Fatal(err)
	}
	for _, r := range cfg.Receivers {
		for _, w := range r.WebhookConfigs {
			if !strings.HasPrefix(w.URL, ExampleWebhookBase+"/") {
				t.Errorf("receiver %s: webhook %q is not under ExampleWebhookBase", r.Name, w.URL)
			}
		}
	}
	amtool := lookTool(t, "amtool")
	for _, c := range []struct {
		labels []string
		want   string
	}{
		{[]string{"alertname=BuildkiteDeploymentFailing", "severity=warning", "owner=team-payments", "component=payments", "environment=production"}, "team-payments"},
		{[]string{"alertname=BuildkiteDeploymentFailing", "severity=warning", "owner=group:default/checkout", "component=cart"}, "team-checkout"},
		{[]string{"alertname=BuildkiteDeploymentFailed", "severity=info", "owner=team-payments", "component=payments"}, "deployments-feed"},
		{[]string{"alertname=BuildkiteExporterDown", "severity=warning", "job=buildkite_deployments_exporter"}, "platform-team"},
		{[]string{"alertname=BuildkiteDeploymentStuck", "severity=warning", "owner=team-unknown", "component=x"}, "deployments-unrouted"},
	} {
		cmd := exec.Command(amtool, append([]string{"config", "routes", "test", "--config.file=alertmanager.yml"}, c.labels...)...)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			t.Fatalf("amtool %v: %v\n%s%s", c.labels, err, out.String(), stderr.String())
		}
		if got := strings.TrimSpace(out.String()); got != c.want {
			t.Errorf("labels %v routed to %q, want %q", c.labels, got, c.want)
		}
	}
}

// lookTool finds a Debian tool; missing, it skips locally and fails in CI.
func lookTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found and CI is set: install Debian's prometheus and prometheus-alertmanager packages", name)
		}
		t.Skipf("%s not found: install Debian's prometheus and prometheus-alertmanager packages", name)
	}
	return p
}

func TestAnchorMatchesGitHub(t *testing.T) {
	re := regexp.MustCompile(`^[a-z0-9_-]+$`)
	for a := range wantAlerts {
		if !re.MatchString(RunbookAnchor(a)) || RunbookAnchor(a) != GitHubAnchor(a) {
			t.Errorf("anchor of %s: %q", a, RunbookAnchor(a))
		}
	}
	if diff := cmp.Diff("buildkiteexporterdown", RunbookAnchor("BuildkiteExporterDown")); diff != "" {
		t.Error(diff)
	}
}
