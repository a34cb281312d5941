//lint:file-ignore SA1019 Grafana 11 reads only the v1 dashboard model; dashboardv2 (which the SDK now prefers) is Grafana 12 only.

package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/heatmap"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/dora"
)

// DORA performance levels: the bands of internal/dora, which the report classifies with too.
var levelColors = [4]string{"green", "blue", "orange", "red"}
var levelNames = [4]string{"Elite", "High", "Medium", "Low"}

// levels maps a value to its DORA level. bounds are the three boundaries between the four levels
// in the value's own order; higherIsBetter says whether Elite is above the first bound.
func levels(bounds [3]float64, higherIsBetter bool) []dashboard.ValueMapping {
	m := []dashboard.ValueMapping{noData("no data", 0)}
	for i := range 4 {
		var from, to *float64
		if higherIsBetter {
			// Elite: [b0, +inf), High: [b1, b0), Medium: [b2, b1), Low: (-inf, b2).
			if i < 3 {
				from = ptr(bounds[i])
			}
			if i > 0 {
				to = ptr(bounds[i-1])
			}
		} else {
			// Elite: (-inf, b0], High: (b0, b1], Medium: (b1, b2], Low: (b2, +inf).
			if i > 0 {
				from = ptr(bounds[i-1])
			}
			if i < 3 {
				to = ptr(bounds[i])
			}
		}
		m = append(m, rangeText(from, to, levelNames[i], levelColors[i], int32(i+1)))
	}
	return m
}

// doraStat is one DORA key: query A shows the value in its unit, query B (the same expression)
// shows the level through value mappings.
func doraStat(title, description, unit, expr string, mappings []dashboard.ValueMapping) *stat.PanelBuilder {
	return stat.NewPanelBuilder().
		Title(title).
		Description(description).
		Span(6).Height(5).
		Unit(unit).Decimals(2).
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		TextMode(common.BigValueTextModeValueAndName).
		ColorMode(common.BigValueColorModeValue).
		Mappings([]dashboard.ValueMapping{noData("no data", 0)}).
		WithTarget(instant("A", expr, "value")).
		WithTarget(instant("B", expr, "DORA level")).
		OverrideByQuery("B", []dashboard.DynamicConfigValue{{Id: "mappings", Value: mappings}})
}

func component() *dashboard.DashboardBuilder {
	b := withCommon(dashboard.NewDashboardBuilder("Buildkite / Deployments / Component"), ComponentUID, "now-30d").
		Description("Deployments of one component, the target of the links from Backstage (?var-component=<name>).").
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Deployments passed").
			Datasource(datasource).
			Enable(true).
			IconColor("green").
			// The gauge's value is the finish time: one event per distinct value, at that time.
			Expr(`buildkite_deployment_last_finished_timestamp_seconds{` + sel + `,state="passed"} * 1000`).
			UseValueForTime(true).
			Step("1m").
			TitleFormat("{{component}} deployed to {{environment}}").
			TagKeys("component,environment,state")).
		Annotation(dashboard.NewAnnotationQueryBuilder().
			Name("Deployments failed or canceled").
			Datasource(datasource).
			Enable(true).
			IconColor("red").
			Expr(`buildkite_deployment_last_finished_timestamp_seconds{` + sel + `,state=~"failed|canceled"} * 1000`).
			UseValueForTime(true).
			Step("1m").
			TitleFormat("{{component}} deployment to {{environment}} {{state}}").
			TagKeys("component,environment,state"))

	b = b.WithRow(dashboard.NewRowBuilder("DORA keys (time range, $environment)"))
	b = b.WithPanel(doraStat("Deployment frequency",
		"Finished (passed or failed) deployments per day in the time range. DORA levels: Elite on demand (at least daily here), High daily to weekly, Medium weekly to monthly, Low less than monthly.",
		"suffix:/day",
		`sum(increase(buildkite_deployments_total{`+sel+`,state=~"passed|failed"}[$__range])) / ($__range_s / 86400)`,
		levels(dora.FrequencyBands, true)))
	b = b.WithPanel(doraStat("Lead time for changes (median)",
		"Commit to passed deployment, median over the time range. DORA levels: Elite < 1 day, High < 1 week, Medium < 1 month, Low longer.",
		"s",
		`histogram_quantile(0.5, sum by (le) (increase(buildkite_deployment_lead_time_seconds_bucket{`+sel+`}[$__range])))`,
		levels(dora.LeadTimeBands, false)))
	b = b.WithPanel(doraStat("Change failure ratio",
		"Failed / (passed + failed) deployments in the time range. DORA levels (2023): Elite ≤ 5 %, High ≤ 10 %, Medium ≤ 15 %, Low more.",
		"percentunit",
		`sum(increase(buildkite_deployments_total{`+sel+`,state="failed"}[$__range])) / sum(increase(buildkite_deployments_total{`+sel+`,state=~"passed|failed"}[$__range]))`,
		levels(dora.FailureBands, false)))
	b = b.WithPanel(doraStat("Failed deployment recovery time (median)",
		"Failed deployment to the next passed one, median over the time range. DORA levels: Elite < 1 hour, High < 1 day, Medium < 1 week, Low longer.",
		"s",
		`histogram_quantile(0.5, sum by (le) (increase(buildkite_deployment_recovery_seconds_bucket{`+sel+`}[$__range])))`,
		levels(dora.RecoveryBands, false)))

	b = b.WithRow(dashboard.NewRowBuilder("Now"))
	b = b.WithPanel(table.NewPanelBuilder().
		Title("What runs where").
		Description("The version and commit of the latest passed deployment per environment.").
		Span(12).Height(6).
		CellHeight(common.TableCellHeightSm).
		WithTarget(tableQuery("A", `max by (component, environment, version, commit) (buildkite_deployment_info{`+sel+`})`)).
		WithTransformation(rename(map[string]string{}, "component", "environment", "version", "commit")).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{"excludeByName": map[string]bool{"Value": true}}}))
	b = b.WithPanel(stat.NewPanelBuilder().
		Title("Running").
		Description("Deployments scheduled or running now, and how long the oldest has run. Compare with the 2-hour stuck-deployment alert.").
		Span(6).Height(6).
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		TextMode(common.BigValueTextModeValueAndName).
		NoValue("none").
		WithTarget(instant("A", `sum(buildkite_deployments_running{`+sel+`})`, "running")).
		WithTarget(instant("B", `time() - min(buildkite_deployment_running_since_timestamp_seconds{`+sel+`})`, "oldest for")).
		OverrideByQuery("A", []dashboard.DynamicConfigValue{{Id: "unit", Value: "short"}, {Id: "decimals", Value: 0}}).
		OverrideByQuery("B", []dashboard.DynamicConfigValue{
			{Id: "unit", Value: "s"},
			{Id: "color", Value: map[string]any{"mode": "thresholds"}},
			{Id: "thresholds", Value: map[string]any{"mode": "absolute", "steps": []map[string]any{{"value": nil, "color": "green"}, {"value": 7200, "color": "red"}}}},
		}))
	b = b.WithPanel(stat.NewPanelBuilder().
		Title("Awaiting approval").
		Description("Deployments waiting on a block step now, and how long the oldest has waited. Compare with the 24-hour awaiting-approval alert.").
		Span(6).Height(6).
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		TextMode(common.BigValueTextModeValueAndName).
		NoValue("none").
		WithTarget(instant("A", `sum(buildkite_deployments_awaiting_approval{`+sel+`})`, "waiting")).
		WithTarget(instant("B", `time() - min(buildkite_deployment_awaiting_approval_since_timestamp_seconds{`+sel+`})`, "oldest for")).
		OverrideByQuery("A", []dashboard.DynamicConfigValue{{Id: "unit", Value: "short"}, {Id: "decimals", Value: 0}}).
		OverrideByQuery("B", []dashboard.DynamicConfigValue{
			{Id: "unit", Value: "s"},
			{Id: "color", Value: map[string]any{"mode": "thresholds"}},
			{Id: "thresholds", Value: map[string]any{"mode": "absolute", "steps": []map[string]any{{"value": nil, "color": "green"}, {"value": 86400, "color": "red"}}}},
		}))
	b = b.WithPanel(table.NewPanelBuilder().
		Title("Alerts").
		Description("Prometheus alerts about the component, firing or pending (the ALERTS series of the Prometheus that evaluates the bundled rules).").
		Span(24).Height(5).
		CellHeight(common.TableCellHeightSm).
		NoValue("no alerts").
		WithTarget(tableQuery("A", `max by (alertname, alertstate, severity, component, environment) (ALERTS{`+selComp+`})`)).
		WithTransformation(rename(map[string]string{}, "alertname", "alertstate", "severity", "component", "environment")).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{"excludeByName": map[string]bool{"Value": true}}}))

	b = b.WithRow(dashboard.NewRowBuilder("Deployments"))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Deployments by environment and state").
		Span(24).Height(8).
		Interval("1h").
		Unit("short").Decimals(0).
		DrawStyle(common.GraphDrawStyleBars).FillOpacity(80).
		Stacking(common.NewStackingConfigBuilder().Mode(common.StackingModeNormal)).
		OverrideByRegexp(".* passed", fixedColor("green")).
		OverrideByRegexp(".* failed", fixedColor("red")).
		OverrideByRegexp(".* canceled", fixedColor("gray")).
		WithTarget(query("A", `sum by (environment, state) (increase(buildkite_deployments_total{`+sel+`}[$__interval]))`, "{{environment}} {{state}}")))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Duration percentiles (1d rolling)").
		Description("Start-to-finish time of passed and failed deployments over the preceding day. Lines: the 15-minute duration SLO and the 30-minute slow-deployment alert. Dots: exemplars, the latest deployment of each bucket; with the datasource's exemplar link (dashboards/provisioning/datasources) a dot opens its build on Buildkite.").
		Span(12).Height(8).
		Unit("s").
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Thresholds(thresholds("transparent", 900, "orange", 1800, "red")).
		// Exemplars on one query only: each query would fetch and draw the same ones.
		WithTarget(query("A", `histogram_quantile(0.5, sum by (le) (increase(buildkite_deployment_duration_seconds_bucket{`+sel+`}[1d])))`, "p50").Exemplar(true)).
		WithTarget(query("B", `histogram_quantile(0.9, sum by (le) (increase(buildkite_deployment_duration_seconds_bucket{`+sel+`}[1d])))`, "p90")).
		WithTarget(query("C", `histogram_quantile(0.99, sum by (le) (increase(buildkite_deployment_duration_seconds_bucket{`+sel+`}[1d])))`, "p99")))
	b = b.WithPanel(heatmap.NewPanelBuilder().
		Title("Duration heatmap").
		Description("Deployments per duration bucket.").
		Span(12).Height(8).
		Interval("1h").
		Calculate(false).
		YAxis(heatmap.NewYAxisConfigBuilder().Unit("s")).
		RowsFrame(heatmap.NewRowsHeatmapOptionsBuilder().Layout(common.HeatmapCellLayoutLe)).
		WithTarget(query("A", `sum by (le) (increase(buildkite_deployment_duration_seconds_bucket{`+sel+`}[$__interval]))`, "{{le}}").
			Format(prometheus.PromQueryFormatHeatmap)))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Approval wait (1d rolling)").
		Description("Block step reached to unblocked, over the preceding day.").
		Span(12).Height(8).
		Unit("s").
		WithTarget(query("A", `histogram_quantile(0.5, sum by (le) (increase(buildkite_deployment_approval_wait_seconds_bucket{`+sel+`}[1d])))`, "p50")).
		WithTarget(query("B", `histogram_quantile(0.9, sum by (le) (increase(buildkite_deployment_approval_wait_seconds_bucket{`+sel+`}[1d])))`, "p90")))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Running and awaiting approval").
		Span(12).Height(8).
		Unit("short").Decimals(0).
		WithTarget(query("A", `sum by (environment) (buildkite_deployments_running{`+sel+`})`, "running {{environment}}")).
		WithTarget(query("B", `sum by (environment) (buildkite_deployments_awaiting_approval{`+sel+`})`, "awaiting approval {{environment}}")))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Lead time and recovery time (7d rolling median)").
		Description("Dots: exemplars, the latest deployment of each bucket; with the datasource's exemplar link a dot opens its build on Buildkite.").
		Span(24).Height(8).
		Unit("s").
		WithTarget(query("A", `histogram_quantile(0.5, sum by (le) (increase(buildkite_deployment_lead_time_seconds_bucket{`+sel+`}[7d])))`, "lead time").Exemplar(true)).
		WithTarget(query("B", `histogram_quantile(0.5, sum by (le) (increase(buildkite_deployment_recovery_seconds_bucket{`+sel+`}[7d])))`, "recovery time").Exemplar(true)))
	return b
}
