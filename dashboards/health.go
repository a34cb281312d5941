//lint:file-ignore SA1019 Grafana 11 reads only the v1 dashboard model; dashboardv2 (which the SDK now prefers) is Grafana 12 only.

package dashboards

import (
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/table"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// selJob picks the exporter's scrape job(s); the exporter's own series carry no component.
const selJob = `job=~"$job"`

func health() *dashboard.DashboardBuilder {
	job := dashboard.NewQueryVariableBuilder("job").
		Label("Job").
		Query(dashboard.StringOrMap{String: ptr("label_values(buildkite_exporter_build_info, job)")}).
		Definition("label_values(buildkite_exporter_build_info, job)").
		Datasource(datasource).
		Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
		Multi(true).
		IncludeAll(true).
		AllValue(".*")
	b := withCommon(dashboard.NewDashboardBuilder("Buildkite / Deployments / Exporter health"), HealthUID, "now-6h", job).
		Description("Is the exporter up, polling, within its Buildkite API budget, and reading the Backstage catalog?")

	up := []dashboard.ValueMapping{valueText("0", "down", "red", "1", "up", "green")}
	b = b.WithRow(dashboard.NewRowBuilder("Status"))
	b = b.WithPanel(stat.NewPanelBuilder().
		Title("Scrape up").
		Description("Prometheus' own up series for the exporter's targets.").
		Span(4).Height(4).
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		ColorMode(common.BigValueColorModeBackground).
		Mappings(up).
		WithTarget(instant("A", `min(up{`+selJob+`})`, "")))
	b = b.WithPanel(stat.NewPanelBuilder().
		Title("Buildkite up").
		Description("1 when the last poll of every organization succeeded.").
		Span(4).Height(4).
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		ColorMode(common.BigValueColorModeBackground).
		Mappings(up).
		WithTarget(instant("A", `min(buildkite_up{`+selJob+`})`, "")))
	b = b.WithPanel(stat.NewPanelBuilder().
		Title("Since last successful poll").
		Description("Oldest successful poll among the organizations. Red past the 10-minute stale-polling alert.").
		Span(4).Height(4).
		Unit("s").
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		ColorScheme(byThresholds()).
		Thresholds(thresholds("green", 300, "orange", 600, "red")).
		WithTarget(instant("A", `time() - min(buildkite_exporter_last_successful_poll_timestamp_seconds{`+selJob+`})`, "")))
	b = b.WithPanel(stat.NewPanelBuilder().
		Title("Catalog components").
		Description("Components with a Buildkite pipeline annotation in the last catalog read.").
		Span(4).Height(4).
		Unit("short").Decimals(0).
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		WithTarget(instant("A", `sum(buildkite_exporter_catalog_components{`+selJob+`})`, "")))
	b = b.WithPanel(stat.NewPanelBuilder().
		Title("Catalog refresh").
		Description("Whether the last catalog refresh succeeded, and how long ago one last did.").
		Span(4).Height(4).
		ReduceOptions(lastValue()).
		GraphMode(common.BigValueGraphModeNone).
		TextMode(common.BigValueTextModeValueAndName).
		WithTarget(instant("A", `min(buildkite_exporter_catalog_last_refresh_success{`+selJob+`})`, "last refresh")).
		WithTarget(instant("B", `time() - min(buildkite_exporter_catalog_last_refresh_success_timestamp_seconds{`+selJob+`})`, "last success")).
		OverrideByQuery("A", []dashboard.DynamicConfigValue{{Id: "mappings", Value: []dashboard.ValueMapping{valueText("0", "failed", "red", "1", "ok", "green")}}}).
		OverrideByQuery("B", []dashboard.DynamicConfigValue{{Id: "unit", Value: "s"}}))
	b = b.WithPanel(table.NewPanelBuilder().
		Title("Version").
		Span(4).Height(4).
		CellHeight(common.TableCellHeightSm).
		WithTarget(tableQuery("A", `max by (instance, version, revision) (buildkite_exporter_build_info{`+selJob+`})`)).
		WithTransformation(rename(map[string]string{}, "instance", "version", "revision")).
		WithTransformation(dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{"excludeByName": map[string]bool{"Value": true}}}))

	b = b.WithRow(dashboard.NewRowBuilder("Polling"))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Time since last successful poll").
		Span(12).Height(8).
		Unit("s").
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Thresholds(thresholds("transparent", 600, "red")).
		WithTarget(query("A", `time() - buildkite_exporter_last_successful_poll_timestamp_seconds{`+selJob+`}`, "{{organization}}")))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Poll and storage errors").
		Span(12).Height(8).
		Unit("short").
		WithTarget(query("A", `sum by (organization) (increase(buildkite_exporter_poll_errors_total{`+selJob+`}[$__rate_interval]))`, "poll {{organization}}")).
		WithTarget(query("B", `sum(increase(buildkite_exporter_storage_errors_total{`+selJob+`}[$__rate_interval]))`, "storage")))

	b = b.WithRow(dashboard.NewRowBuilder("Buildkite API"))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("API requests by endpoint and code").
		Span(12).Height(8).
		Unit("reqps").
		WithTarget(query("A", `sum by (endpoint, code) (rate(buildkite_exporter_api_requests_total{`+selJob+`}[$__rate_interval]))`, "{{endpoint}} {{code}}")))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("API error ratio and p90 latency").
		Description("Error ratio leaves out 429s: the exporter waits those out (see the rate-limit panels).").
		Span(12).Height(8).
		Unit("percentunit").
		WithTarget(query("A",
			`(sum(rate(buildkite_exporter_api_requests_total{`+selJob+`,code!~"2..|429"}[$__rate_interval])) or vector(0)) / sum(rate(buildkite_exporter_api_requests_total{`+selJob+`}[$__rate_interval]))`,
			"error ratio")).
		WithTarget(query("B", `histogram_quantile(0.9, sum by (endpoint, le) (rate(buildkite_exporter_api_request_duration_seconds_bucket{`+selJob+`}[$__rate_interval])))`, "p90 {{endpoint}}")).
		OverrideByQuery("B", []dashboard.DynamicConfigValue{{Id: "unit", Value: "s"}, {Id: "custom.axisPlacement", Value: "right"}}))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Rate-limit budget left").
		Description("Remaining / limit of the Buildkite REST rate limits the responses report (organization and user scopes). Red below the 10 % low-budget alert.").
		Span(12).Height(8).
		Unit("percentunit").Min(0).Max(1).
		ThresholdsStyle(common.NewGraphThresholdsStyleConfigBuilder().Mode(common.GraphThresholdsStyleModeDashed)).
		Thresholds(thresholds("red", 0.1, "transparent")).
		WithTarget(query("A",
			`min by (scope) (buildkite_exporter_api_rate_limit_remaining{`+selJob+`} / buildkite_exporter_api_rate_limit_limit{`+selJob+`})`,
			"{{scope}}")))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Throttled waits").
		Description("Requests the exporter held back to stay within the rate limit.").
		Span(12).Height(8).
		Unit("short").
		WithTarget(query("A", `sum by (scope) (increase(buildkite_exporter_api_throttled_waits_total{`+selJob+`}[$__rate_interval]))`, "{{scope}}")))
	b = b.WithPanel(table.NewPanelBuilder().
		Title("Token scopes").
		Description("Scopes the API token lacks (Buildkite token settings: grant them, or the matching data stays empty).").
		Span(12).Height(6).
		CellHeight(common.TableCellHeightSm).
		WithTarget(tableQuery("A", `max by (scope) (buildkite_exporter_token_missing_scopes{`+selJob+`})`)).
		WithTransformation(rename(map[string]string{"Value": "status"}, "scope", "Value")).
		OverrideByName("Value", []dashboard.DynamicConfigValue{
			{Id: "custom.cellOptions", Value: map[string]any{"type": "color-text"}},
			{Id: "mappings", Value: []dashboard.ValueMapping{valueText("0", "granted", "green", "1", "missing", "red")}},
		}))
	b = b.WithPanel(timeseries.NewPanelBuilder().
		Title("Catalog errors by reason").
		Description("Entities the catalog read could not use, by reason (see the exporter's log for the entity and the fix).").
		Span(12).Height(6).
		Unit("short").Decimals(0).
		WithTarget(query("A", `sum by (reason) (buildkite_exporter_catalog_errors{`+selJob+`})`, "{{reason}}")))
	return b
}
