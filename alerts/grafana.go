package alerts

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Grafana-managed alert rules, one per (alert, component), for the Backstage Grafana plugin's
// alerts card: it shows only Grafana-managed rules, selected by exact match on the rule's own
// labels (grafana/alert-label-selector: component=<name>), and joins firing instances to rules
// by alertname = rule title. Rules that live in Prometheus never appear there.
//
// The expressions are those of the Prometheus rules (expr.go) with the component's matcher in
// every selector, so each rule evaluates one component's series only. The recording rules the
// Prometheus burn-rate alerts read are inlined: Grafana-managed rules must not depend on whether
// the Prometheus rules are loaded.

// GrafanaFolder is the folder the rules are provisioned into.
const GrafanaFolder = "Buildkite deployments"

// GrafanaComponent is a catalog component the rules are generated for.
type GrafanaComponent struct {
	Label string // the component label: name, or namespace/name
	Owner string // spec.owner, as buildkite_component_info's owner label has it
}

// GrafanaOptions are the settings of a Grafana provisioning file.
type GrafanaOptions struct {
	// DatasourceUID is the uid of the Prometheus data source that scrapes the exporter.
	DatasourceUID string
	// OrgID is Grafana's organization; 0 means 1.
	OrgID int64
}

// The evaluation intervals: the component alerts every minute (a failure should show on the
// page within a minute or two), the burn rates, over 1d and 3d windows, every five.
const (
	grafanaInterval    = time.Minute
	grafanaSLOInterval = 5 * time.Minute
)

// grafanaAlert is one alert of the default set: what a component page needs.
type grafanaAlert struct {
	name     string
	slo      bool // evaluated at grafanaSLOInterval
	severity string
	forDur   time.Duration
	// window is the longest range the expression reads, for the query's relativeTimeRange.
	window      time.Duration
	expr        func(sel string) string
	summary     string
	description string
}

// grafanaAlerts are failing, failed, the two budget burns and stuck, with the thresholds of p.
func grafanaAlerts(p Params) []grafanaAlert {
	e := exprs{p}
	tiers := ticketTiers(p)
	burn := func(slo string) func(string) string {
		return func(sel string) string { return e.budgetBurn(slo, tiers, sel) }
	}
	return []grafanaAlert{
		{
			name: "BuildkiteDeploymentFailing", severity: "warning", forDur: p.FailingFor, window: p.StateHold, expr: e.failing,
			summary:     "The latest deployment failed and none has passed since.",
			description: "The latest deployment of {{ $labels.component }} to {{ $labels.environment }} failed and no deployment has passed since, for more than " + promDuration(p.FailingFor) + ".",
		},
		{
			name: "BuildkiteDeploymentFailed", severity: "info", window: 15 * time.Minute, expr: e.failed,
			summary:     "A Buildkite deployment failed.",
			description: "A deployment of {{ $labels.component }} to {{ $labels.environment }} (pipeline {{ $labels.pipeline }}) failed in the last 15 minutes.",
		},
		{
			name: "BuildkiteDeploymentStuck", severity: "warning", window: 10 * time.Minute, expr: e.stuck,
			summary:     "A deployment has been running far too long.",
			description: "A deployment of {{ $labels.component }} to {{ $labels.environment }} has been running for more than " + promDuration(p.StuckAfter) + ".",
		},
		{
			name: "BuildkiteDeploymentSuccessBudgetBurn", slo: true, severity: "warning", window: 72 * time.Hour, expr: burn("success"),
			summary:     "Deployments fail faster than the success objective allows.",
			description: "{{ $labels.component }} in {{ $labels.environment }} is spending its success error budget faster than its objective allows over the last 1d and 2h or 3d and 6h: too many deployments fail.",
		},
		{
			name: "BuildkiteDeploymentDurationBudgetBurn", slo: true, severity: "warning", window: 72 * time.Hour, expr: burn("duration"),
			summary:     "Deployments are slower than the duration objective allows.",
			description: "{{ $labels.component }} in {{ $labels.environment }} is spending its duration error budget faster than its objective allows over the last 1d and 2h or 3d and 6h: too many passed deployments take longer than " + promDuration(p.DurationThreshold) + ".",
		},
	}
}

// GrafanaAlertNames are the alerts of the default set, in file order.
func GrafanaAlertNames() []string {
	var out []string
	for _, a := range grafanaAlerts(DefaultParams()) {
		out = append(out, a.name)
	}
	return out
}

// The file provisioning schema of Grafana alerting (apiVersion 1), as far as these rules use it.

// GrafanaFile is a Grafana alerting provisioning file.
type GrafanaFile struct {
	APIVersion int            `yaml:"apiVersion" json:"apiVersion"`
	Groups     []GrafanaGroup `yaml:"groups" json:"groups"`
}

// GrafanaGroup is a rule group: rules evaluated at one interval, in one folder.
type GrafanaGroup struct {
	OrgID    int64         `yaml:"orgId" json:"orgId"`
	Name     string        `yaml:"name" json:"name"`
	Folder   string        `yaml:"folder" json:"folder"`
	Interval string        `yaml:"interval" json:"interval"`
	Rules    []GrafanaRule `yaml:"rules" json:"rules"`
}

// GrafanaRule is one alert rule.
type GrafanaRule struct {
	UID          string            `yaml:"uid" json:"uid"`
	Title        string            `yaml:"title" json:"title"`
	Condition    string            `yaml:"condition" json:"condition"`
	Data         []GrafanaQuery    `yaml:"data" json:"data"`
	NoDataState  string            `yaml:"noDataState" json:"noDataState"`
	ExecErrState string            `yaml:"execErrState" json:"execErrState"`
	For          string            `yaml:"for" json:"for"`
	Annotations  map[string]string `yaml:"annotations" json:"annotations"`
	Labels       map[string]string `yaml:"labels" json:"labels"`
	IsPaused     bool              `yaml:"isPaused" json:"isPaused"`
}

// GrafanaQuery is a query or a server-side expression of a rule.
type GrafanaQuery struct {
	RefID             string            `yaml:"refId" json:"refId"`
	RelativeTimeRange *GrafanaTimeRange `yaml:"relativeTimeRange,omitempty" json:"relativeTimeRange,omitempty"`
	DatasourceUID     string            `yaml:"datasourceUid" json:"datasourceUid"`
	Model             GrafanaQueryModel `yaml:"model" json:"model"`
}

// GrafanaTimeRange is seconds before the evaluation time.
type GrafanaTimeRange struct {
	From int64 `yaml:"from" json:"from"`
	To   int64 `yaml:"to" json:"to"`
}

// GrafanaQueryModel is the model of a Prometheus instant query (Expr set) or of a threshold
// expression (Type "threshold").
type GrafanaQueryModel struct {
	RefID      string             `yaml:"refId" json:"refId"`
	Datasource GrafanaDatasource  `yaml:"datasource" json:"datasource"`
	Expr       string             `yaml:"expr,omitempty" json:"expr,omitempty"`
	Instant    bool               `yaml:"instant,omitempty" json:"instant,omitempty"`
	Range      *bool              `yaml:"range,omitempty" json:"range,omitempty"`
	Type       string             `yaml:"type,omitempty" json:"type,omitempty"`
	Expression string             `yaml:"expression,omitempty" json:"expression,omitempty"`
	Conditions []GrafanaCondition `yaml:"conditions,omitempty" json:"conditions,omitempty"`
}

// GrafanaDatasource names a data source by type and uid.
type GrafanaDatasource struct {
	Type string `yaml:"type" json:"type"`
	UID  string `yaml:"uid" json:"uid"`
}

// GrafanaCondition is a threshold expression's condition.
type GrafanaCondition struct {
	Evaluator GrafanaEvaluator `yaml:"evaluator" json:"evaluator"`
}

// GrafanaEvaluator compares a value: type gt with params [0] is "above 0".
type GrafanaEvaluator struct {
	Type   string    `yaml:"type" json:"type"`
	Params []float64 `yaml:"params" json:"params"`
}

// expressionDatasource is Grafana's server-side expressions pseudo data source.
const expressionDatasource = "__expr__"

// GrafanaRuleUID is the rule's uid: stable across renders, at most 40 characters (Grafana's
// limit) of [a-z0-9-], from the alert and component only, so re-provisioning updates the rule in
// place and a threshold change keeps its history.
func GrafanaRuleUID(alert, component string) string {
	sum := sha256.Sum256([]byte(alert + "\x00" + component))
	return "bkd-" + hex.EncodeToString(sum[:])[:36]
}

// GrafanaRuleTitle is the rule's title, which Grafana also uses as its alertname label. Titles
// must be unique within a folder, so the component is part of it.
func GrafanaRuleTitle(alert, component string) string { return alert + " " + component }

// grafanaGroupName is the rule group of a component's alerts: its label with "/" (which a
// group name in the ruler API's paths cannot hold) written as ":", which entity names never
// contain.
func grafanaGroupName(component string, slo bool) string {
	g := strings.ReplaceAll(component, "/", ":")
	if slo {
		return g + " SLO"
	}
	return g
}

// validGrafanaValue refuses what would break a rule or its selector: Backstage names and owners
// never hold these.
func validGrafanaValue(what, v string) error {
	if v == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if strings.ContainsAny(v, ",=\n\r\"\\{}") {
		return fmt.Errorf("%s %q holds a character the Backstage Grafana plugin's label selector or PromQL cannot carry (, = \" \\ { } or a line break)", what, v)
	}
	return nil
}

// Grafana returns the rules of components as a provisioning file. It fails, naming the
// problem, on invalid parameters, a missing data source uid or an unusable component label.
func Grafana(p Params, opts GrafanaOptions, components []GrafanaComponent) (*GrafanaFile, error) {
	if err := p.Validate(); err != nil {
		return nil, fmt.Errorf("grafana alert rules: %w", err)
	}
	if opts.DatasourceUID == "" {
		return nil, errors.New("grafana alert rules: no Prometheus data source uid: give --grafana.datasource-uid (Grafana → Connections → Data sources → the Prometheus that scrapes the exporter; the uid is the last part of its URL)")
	}
	if len(opts.DatasourceUID) > 40 || strings.ContainsAny(opts.DatasourceUID, " \n\"'") {
		return nil, fmt.Errorf("grafana alert rules: data source uid %q is not a Grafana uid (at most 40 characters, no spaces or quotes)", opts.DatasourceUID)
	}
	org := opts.OrgID
	if org == 0 {
		org = 1
	}
	sorted := slices.Clone(components)
	slices.SortFunc(sorted, func(a, b GrafanaComponent) int { return strings.Compare(a.Label, b.Label) })
	sorted = slices.CompactFunc(sorted, func(a, b GrafanaComponent) bool { return a.Label == b.Label })
	alerts := grafanaAlerts(p)
	f := &GrafanaFile{APIVersion: 1, Groups: []GrafanaGroup{}}
	for _, c := range sorted {
		if err := validGrafanaValue("component", c.Label); err != nil {
			return nil, fmt.Errorf("grafana alert rules: %w", err)
		}
		owner := c.Owner
		if owner != "" {
			if err := validGrafanaValue("owner of "+c.Label, owner); err != nil {
				return nil, fmt.Errorf("grafana alert rules: %w", err)
			}
		}
		sel := "component=" + quote(c.Label)
		for _, slo := range []bool{false, true} {
			g := GrafanaGroup{OrgID: org, Name: grafanaGroupName(c.Label, slo), Folder: GrafanaFolder, Interval: promDuration(grafanaInterval)}
			if slo {
				g.Interval = promDuration(grafanaSLOInterval)
			}
			for _, a := range alerts {
				if a.slo != slo {
					continue
				}
				g.Rules = append(g.Rules, grafanaRule(p, opts.DatasourceUID, a, c.Label, owner, sel))
			}
			f.Groups = append(f.Groups, g)
		}
	}
	return f, nil
}

// quote is a PromQL string literal (Go's double-quoted syntax).
func quote(s string) string { return fmt.Sprintf("%q", s) }

func grafanaRule(p Params, dsUID string, a grafanaAlert, component, owner, sel string) GrafanaRule {
	from := int64(a.window / time.Second)
	if from < 600 {
		from = 600
	}
	labels := map[string]string{"component": component, "severity": a.severity}
	if owner != "" {
		labels["owner"] = owner
	}
	noRange := false
	return GrafanaRule{
		UID:       GrafanaRuleUID(a.name, component),
		Title:     GrafanaRuleTitle(a.name, component),
		Condition: "B",
		Data: []GrafanaQuery{
			{
				RefID: "A", RelativeTimeRange: &GrafanaTimeRange{From: from}, DatasourceUID: dsUID,
				Model: GrafanaQueryModel{RefID: "A", Datasource: GrafanaDatasource{Type: "prometheus", UID: dsUID}, Expr: a.expr(sel), Instant: true, Range: &noRange},
			},
			{
				// The query returns only the series that breach (its own comparison), each
				// with a positive value; the threshold turns them into alert instances.
				RefID: "B", DatasourceUID: expressionDatasource,
				Model: GrafanaQueryModel{
					RefID: "B", Datasource: GrafanaDatasource{Type: expressionDatasource, UID: expressionDatasource},
					Type: "threshold", Expression: "A",
					Conditions: []GrafanaCondition{{Evaluator: GrafanaEvaluator{Type: "gt", Params: []float64{0}}}},
				},
			},
		},
		// An empty result is the healthy state: the query keeps only breaching series.
		NoDataState:  "OK",
		ExecErrState: "Error",
		For:          promDuration(a.forDur),
		Annotations: map[string]string{
			"summary":     a.summary,
			"description": a.description,
			"runbook_url": p.RunbookURL + "#" + RunbookAnchor(a.name),
		},
		Labels: labels,
	}
}

// RenderGrafana returns the provisioning file of Grafana as YAML, headed by a comment on what
// it is and how it was made.
func RenderGrafana(p Params, opts GrafanaOptions, components []GrafanaComponent) ([]byte, error) {
	f, err := Grafana(p, opts, components)
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	rules := 0
	for _, g := range f.Groups {
		rules += len(g.Rules)
	}
	fmt.Fprintf(&b, `# Grafana-managed alert rules for buildkite_deployments_exporter, generated by
# "buildkite_deployments_exporter grafana-alerts". Provision it (Grafana's
# provisioning/alerting directory) or import it; do not edit by hand, regenerate it.
#
# Components: %d; rules: %d; Prometheus queries per minute: %.0f. Each rule is labelled
# component=<name>, which the Backstage annotation grafana/alert-label-selector: component=<name>
# selects. They duplicate these Prometheus alerts; route only one of the two to people (see
# alerts/README.md, "Grafana-managed alerts"):
#   %s
# Thresholds: failing_for %s, stuck_after %s, min_deployments %d, SLO duration threshold %s,
# SLO window %s; data source uid %s.
`, len(components), rules, QueriesPerMinute(f), strings.Join(GrafanaAlertNames(), "\n#   "),
		promDuration(p.FailingFor), promDuration(p.StuckAfter), p.MinDeployments, promDuration(p.DurationThreshold),
		promDuration(p.SLOWindow), opts.DatasourceUID)
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(f); err != nil {
		return nil, fmt.Errorf("grafana alert rules: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// QueriesPerMinute is the Prometheus queries Grafana sends to evaluate f: one per rule and
// evaluation (the threshold is a server-side expression, evaluated in Grafana).
func QueriesPerMinute(f *GrafanaFile) float64 {
	var q float64
	for _, g := range f.Groups {
		d, err := time.ParseDuration(g.Interval)
		if err != nil || d <= 0 {
			continue
		}
		for _, r := range g.Rules {
			for _, d2 := range r.Data {
				if d2.DatasourceUID != expressionDatasource {
					q += float64(time.Minute) / float64(d)
				}
			}
		}
	}
	return q
}
