//lint:file-ignore SA1019 Grafana 11 reads only the v1 dashboard model; dashboardv2 (which the SDK now prefers) is Grafana 12 only.

package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// The SLO panels read the bundled recording rules (alerts/buildkite-deployments.rules.yml), so
// that they show exactly what the burn-rate alerts evaluate. Their series carry component,
// environment and slo (success: deployments pass; duration: passed deployments finish within 15
// minutes).
const (
	ruleBurnRate    = "component_environment_slo:buildkite_deployment_error_budget:burnrate"
	ruleBudgetLeft  = "component_environment_slo:buildkite_deployment_error_budget_remaining:ratio"
	ruleErrorRatio  = "component_environment_slo:buildkite_deployment_errors_per_deployment:ratio_slo_window"
	ruleDeployments = "component_environment_slo:buildkite_deployments:increase_slo_window"
)

// Burn-rate thresholds of the ticket-tier alert pairs in the default rules render (SLO window
// 4w, each tier spends 10 % of the budget within its long window): 1d and 2h over 2.8, 3d and 6h
// over 0.933. A different window in the exporter's config renders other thresholds.
const (
	burnFast = 2.8
	burnSlow = 0.933
)

// perSLO selects one SLO's series and drops the slo label, so that the queries of a table share
// the same label set (component, environment) and the merge transformation can join them.
func perSLO(metric, slo string) string {
	return fmt.Sprintf(`max by (component, environment) (%s{%s,slo=%q})`, metric, sel, slo)
}

func objective(slo string) string {
	return perSLO("buildkite_deployment_slo_objective_ratio", slo)
}

func achieved(slo string) string { return "1 - " + perSLO(ruleErrorRatio, slo) }

func budgetLeft(slo string) string { return perSLO(ruleBudgetLeft, slo) }

// burnPanel shows the burn rates of the two ticket-tier alert pairs with their thresholds.
func burnPanel(slo, title string) *timeseries.PanelBuilder {
	p := timeseries.NewPanelBuilder().
		Title(title).
		Description(fmt.Sprintf("Error-budget burn rate per window (1 = the budget lasts exactly the SLO window). The burn alert fires when both windows of a pair are over its line: 1d and 2h over %v, or 3d and 6h over %v, with at least %d deployments in the long window. The lines are the default rules' thresholds.", burnFast, burnSlow, minDeployments)).
		Span(12).Height(8).
		Unit("x").Min(0).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Thresholds(thresholds("transparent", burnSlow, "orange", burnFast, "red"))
	for i, w := range []string{"2h", "6h", "1d", "3d"} {
		p = p.WithTarget(query(string(rune('A'+i)), perSLO(ruleBurnRate+w, slo), "{{component}} {{environment}} "+w))
	}
	return p
}

func slo() *dashboard.DashboardBuilder {
	b := withCommon(dashboard.NewDashboardBuilder("Buildkite / Deployments / SLOs"), SLOUID, "now-28d").
		Description("Deployment SLOs over the SLO window of the bundled rules (28 days by default): success (deployments pass) and duration (deployments finish within 15 minutes).")

	b = b.WithRow(dashboard.NewRowBuilder("Objectives"))
	b = b.WithPanel(table.NewPanelBuilder().
		Title("Objective vs achieved over the SLO window").
		Description("Per component and environment. An SLO with fewer than "+fmt.Sprint(minDeployments)+" deployments in the window is shown in red in the deployments column: it says nothing yet, and its burn-rate alerts stay silent.").
		Span(24).Height(10).
		CellHeight(common.TableCellHeightSm).
		WithTarget(tableQuery("A", objective("success"))).
		WithTarget(tableQuery("B", achieved("success"))).
		WithTarget(tableQuery("C", budgetLeft("success"))).
		WithTarget(tableQuery("D", objective("duration"))).
		WithTarget(tableQuery("E", achieved("duration"))).
		WithTarget(tableQuery("F", budgetLeft("duration"))).
		WithTarget(tableQuery("G", perSLO(ruleDeployments, "success"))).
		WithTransformation(dashboard.DataTransformerConfig{Id: "merge", Options: map[string]any{}}).
		WithTransformation(rename(map[string]string{
			"Value #A": "Success objective",
			"Value #B": "Success achieved",
			"Value #C": "Success budget left",
			"Value #D": "Duration objective",
			"Value #E": "Duration achieved",
			"Value #F": "Duration budget left",
			"Value #G": "Deployments (success SLO)",
		}, "component", "environment", "Value #A", "Value #B", "Value #C", "Value #D", "Value #E", "Value #F", "Value #G")).
		OverrideByName("component", componentLink()).
		OverrideByRegexp("Value #[ABDE]", []dashboard.DynamicConfigValue{{Id: "unit", Value: "percentunit"}, {Id: "decimals", Value: 1}}).
		OverrideByRegexp("Value #[CF]", []dashboard.DynamicConfigValue{
			{Id: "unit", Value: "percentunit"}, {Id: "decimals", Value: 0},
			{Id: "custom.cellOptions", Value: map[string]any{"type": "color-background"}},
			{Id: "thresholds", Value: map[string]any{"mode": "absolute", "steps": []map[string]any{
				{"value": nil, "color": "red"}, {"value": 0, "color": "orange"}, {"value": 0.25, "color": "green"}}}},
		}).
		OverrideByName("Value #G", []dashboard.DynamicConfigValue{
			{Id: "unit", Value: "short"}, {Id: "decimals", Value: 0},
			{Id: "custom.cellOptions", Value: map[string]any{"type": "color-text"}},
			{Id: "thresholds", Value: map[string]any{"mode": "absolute", "steps": []map[string]any{
				{"value": nil, "color": "red"}, {"value": minDeployments, "color": "text"}}}},
		}))

	b = b.WithRow(dashboard.NewRowBuilder("Error budget"))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Success: error budget left").
		Span(12).Height(8).
		Unit("percentunit").
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Thresholds(thresholds("red", 0, "transparent")).
		WithTarget(query("A", budgetLeft("success"), "{{component}} {{environment}}")))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Duration: error budget left").
		Span(12).Height(8).
		Unit("percentunit").
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Thresholds(thresholds("red", 0, "transparent")).
		WithTarget(query("A", budgetLeft("duration"), "{{component}} {{environment}}")))
	b = b.WithPanel(burnPanel("success", "Success: burn rate"))
	b = b.WithPanel(burnPanel("duration", "Duration: burn rate"))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Deployments in the SLO window").
		Description("Deployments each SLO counted over its window (success: passed and failed; duration: passed). Below the dashed line an SLO is statistically empty and its burn alerts stay silent.").
		Span(12).Height(8).
		Unit("short").Decimals(0).Min(0).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Thresholds(thresholds("red", minDeployments, "transparent")).
		WithTarget(query("A", perSLO(ruleDeployments, "success"), "success {{component}} {{environment}}")).
		WithTarget(query("B", perSLO(ruleDeployments, "duration"), "duration {{component}} {{environment}}")))
	b = b.WithPanel(table.NewPanelBuilder().
		Title("SLO alerts").
		Description("Burn-rate and budget alerts, firing or pending.").
		Span(12).Height(8).
		CellHeight(common.TableCellHeightSm).
		NoValue("no alerts").
		WithTarget(tableQuery("A", `max by (alertname, alertstate, severity, component, environment) (ALERTS{`+selComp+`,alertname=~"Buildkite.*(Budget|SLO).*"})`)).
		WithTransformation(rename(map[string]string{}, "alertname", "alertstate", "severity", "component", "environment")).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{"excludeByName": map[string]bool{"Value": true}}}))
	return b
}
