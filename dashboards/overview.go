//lint:file-ignore SA1019 Grafana 11 reads only the v1 dashboard model; dashboardv2 (which the SDK now prefers) is Grafana 12 only.

package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Expressions shared by the overview and the component dashboard. %s is a selector, %w a window.
const (
	// finished counts passed and failed deployments: canceled ones are neither a success nor a
	// change failure (the same denominator as the alert rules).
	exprFinishedByComponent = `sum by (component) (increase(buildkite_deployments_total{` + sel + `,state=~"passed|failed"}[$__range]))`
	exprFailedByComponent   = `sum by (component) (increase(buildkite_deployments_total{` + sel + `,state="failed"}[$__range]))`
)

func overview() *dashboard.DashboardBuilder {
	b := withCommon(dashboard.NewDashboardBuilder("Buildkite / Deployments / Overview"), OverviewUID, "now-7d").
		Description("Deployments of every component whose Backstage entity names a Buildkite pipeline.")

	b = b.WithRow(dashboard.NewRowBuilder("Now"))
	b = b.WithPanel(stat.NewPanelBuilder().
		Title("Deployments").
		Description("Finished deployments (passed, failed, canceled) in the time range.").
		Span(4).Height(4).
		Unit("short").Decimals(0).
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		WithTarget(instant("A", `sum(increase(buildkite_deployments_total{`+sel+`}[$__range]))`, "")))
	b = b.WithPanel(stat.NewPanelBuilder().
		Title("Production success ratio").
		Description("Passed / (passed + failed) production deployments in the time range. Canceled deployments are left out.").
		Span(4).Height(4).
		Unit("percentunit").Decimals(1).Min(0).Max(1).
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		ColorScheme(byThresholds()).
		Thresholds(thresholds("red", 0.9, "orange", 0.95, "green")).
		Mappings([]dashboard.ValueMapping{noData("no deployments", 0)}).
		WithTarget(instant("A",
			`sum(increase(buildkite_deployments_total{`+selProd+`,state="passed"}[$__range]))`+
				` / sum(increase(buildkite_deployments_total{`+selProd+`,state=~"passed|failed"}[$__range]))`, "")))
	b = b.WithPanel(durationStat("Median duration", "Median start-to-finish time of passed and failed deployments in the time range.", "0.5", sel))
	b = b.WithPanel(durationStat("p90 duration", "90th percentile start-to-finish time in the time range. Orange past the 15-minute duration SLO, red past the 30-minute slow-deployment alert.", "0.9", sel))
	b = b.WithPanel(stat.NewPanelBuilder().
		Title("Components failing now").
		Description("Components whose latest finished deployment (in any selected environment) failed.").
		Span(4).Height(4).
		Unit("short").Decimals(0).
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		ColorScheme(byThresholds()).
		Thresholds(thresholds("green", 1, "red")).
		WithTarget(instant("A", `count(max by (component) (buildkite_deployment_failing{`+sel+`}) == 1) or vector(0)`, "")))
	b = b.WithPanel(stat.NewPanelBuilder().
		Title("Running / awaiting approval").
		Description("Deployments running now, and deployments waiting on a block step.").
		Span(4).Height(4).
		Unit("short").Decimals(0).
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		TextMode(common.BigValueTextModeValueAndName).
		WithTarget(instant("A", `sum(buildkite_deployments_running{`+sel+`})`, "running")).
		WithTarget(instant("B", `sum(buildkite_deployments_awaiting_approval{`+sel+`})`, "awaiting approval")))

	b = b.WithRow(dashboard.NewRowBuilder("Over time"))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Deployments per day by state").
		Description("Finished deployments per day, stacked by outcome.").
		Span(12).Height(8).
		Interval("1d").
		Unit("short").Decimals(0).
		DrawStyle(common.GraphDrawStyleBars).FillOpacity(80).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		OverrideByName("passed", fixedColor("green")).
		OverrideByName("failed", fixedColor("red")).
		OverrideByName("canceled", fixedColor("gray")).
		WithTarget(query("A", `sum by (state) (increase(buildkite_deployments_total{`+sel+`}[$__interval]))`, "{{state}}")))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Success ratio by environment (1d rolling)").
		Description("Passed / (passed + failed) over the preceding day. Gaps are days without deployments.").
		Span(12).Height(8).
		Unit("percentunit").Min(0).Max(1).
		WithTarget(query("A",
			`sum by (environment) (increase(buildkite_deployments_total{`+sel+`,state="passed"}[1d]))`+
				` / sum by (environment) (increase(buildkite_deployments_total{`+sel+`,state=~"passed|failed"}[1d]))`, "{{environment}}")))

	b = b.WithRow(dashboard.NewRowBuilder("Components"))
	b = b.WithPanel(table.NewPanelBuilder().
		Title("Components").
		Description("One row per component over the time range; click a component for its dashboard. Frequency is finished (passed or failed) deployments per day; change failure ratio is failed / (passed + failed); SLO budget left is the lowest left over the 28-day SLO window among the selected environments.").
		Span(24).Height(12).
		CellHeight(common.TableCellHeightSm).
		WithTarget(tableQuery("A", exprFinishedByComponent+` / ($__range_s / 86400)`)).
		WithTarget(tableQuery("B", exprFailedByComponent+` / `+exprFinishedByComponent)).
		WithTarget(tableQuery("C", `histogram_quantile(0.5, sum by (component, le) (increase(buildkite_deployment_duration_seconds_bucket{`+sel+`}[$__range])))`)).
		WithTarget(tableQuery("D", `histogram_quantile(0.9, sum by (component, le) (increase(buildkite_deployment_duration_seconds_bucket{`+sel+`}[$__range])))`)).
		// The state whose last-finished timestamp is the component's latest is the last state;
		// Grafana's date units want milliseconds.
		WithTarget(tableQuery("E",
			`(max by (component, state) (buildkite_deployment_last_finished_timestamp_seconds{`+sel+`})`+
				` == on (component) group_left () max by (component) (buildkite_deployment_last_finished_timestamp_seconds{`+sel+`})) * 1000`)).
		WithTarget(tableQuery("F", `min by (component) (`+ruleBudgetLeft+`{`+sel+`,slo="success"})`)).
		WithTransformation(dashboard.DataTransformerConfig{Id: "joinByField", Options: map[string]any{"byField": "component", "mode": "outer"}}).
		WithTransformation(rename(map[string]string{
			"Value #A": "Deploys / day",
			"Value #B": "Change failure ratio",
			"Value #C": "p50 duration",
			"Value #D": "p90 duration",
			"Value #E": "Last deployment",
			"state":    "Last state",
			"Value #F": "SLO budget left",
		}, "component", "Value #A", "Value #B", "Value #C", "Value #D", "Value #E", "state", "Value #F")).
		OverrideByName("component", componentLink()).
		OverrideByName("Value #A", []dashboard.DynamicConfigValue{{Id: "unit", Value: "short"}, {Id: "decimals", Value: 2}}).
		OverrideByName("Value #B", []dashboard.DynamicConfigValue{{Id: "unit", Value: "percentunit"}, {Id: "decimals", Value: 1}}).
		OverrideByName("Value #C", []dashboard.DynamicConfigValue{{Id: "unit", Value: "s"}}).
		OverrideByName("Value #D", []dashboard.DynamicConfigValue{{Id: "unit", Value: "s"}}).
		OverrideByName("Value #E", []dashboard.DynamicConfigValue{{Id: "unit", Value: "dateTimeFromNow"}}).
		OverrideByName("Value #F", []dashboard.DynamicConfigValue{
			{Id: "unit", Value: "percentunit"},
			{Id: "custom.cellOptions", Value: map[string]any{"type": "color-text"}},
			{Id: "thresholds", Value: map[string]any{"mode": "absolute", "steps": []map[string]any{
				{"value": nil, "color": "red"}, {"value": 0.25, "color": "orange"}, {"value": 0.5, "color": "green"}}}},
		}).
		OverrideByName("state", []dashboard.DynamicConfigValue{
			{Id: "custom.cellOptions", Value: map[string]any{"type": "color-text"}},
			{Id: "mappings", Value: []dashboard.ValueMapping{
				valueText("passed", "passed", "green", "failed", "failed", "red", "canceled", "canceled", "gray"),
			}},
		}))
	return b
}

// fixedColor gives a series one colour, so that passed is green and failed red on every panel.
func fixedColor(c string) []dashboard.DynamicConfigValue {
	return []dashboard.DynamicConfigValue{{Id: "color", Value: map[string]any{"mode": "fixed", "fixedColor": c}}}
}

// durationStat is a stat panel of one quantile of deployment durations over the time range,
// coloured against the 15-minute duration SLO and the 30-minute slow-deployment alert.
func durationStat(title, description, quantile, sel string) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Span(4).Height(4).
		Unit("s").
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		ColorScheme(byThresholds()).
		Thresholds(thresholds("green", 900, "orange", 1800, "red")).
		Mappings([]dashboard.ValueMapping{noData("no deployments", 0)}).
		WithTarget(instant("A", `histogram_quantile(`+quantile+`, sum by (le) (increase(buildkite_deployment_duration_seconds_bucket{`+sel+`}[$__range])))`, ""))
}
