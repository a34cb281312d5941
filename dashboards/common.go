//lint:file-ignore SA1019 Grafana 11 reads only the v1 dashboard model; dashboardv2 (which the SDK now prefers) is Grafana 12 only.

package dashboards

import (
	"fmt"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
)

// Tag is on every dashboard. It is one word of letters and '-' so that the Backstage Grafana
// plugin's `grafana/dashboard-selector: buildkite-deployments` becomes a server-side tag search
// (its isSingleWord shortcut) instead of a fetch of every dashboard in the instance.
const Tag = "buildkite-deployments"

// Tags are the tags of every dashboard; the dashboards-link dropdown lists dashboards with Tag.
var Tags = []string{Tag, "buildkite"}

// Dashboard uids. They are part of every link users and Backstage entities hold, so they never
// change; Grafana refuses uids longer than 40 characters.
const (
	OverviewUID  = "bk-deploy-overview"
	ComponentUID = "bk-deploy-component"
	SLOUID       = "bk-deploy-slo"
	HealthUID    = "bk-exporter-health"
)

// ComponentPath is the component dashboard's path under the Grafana root URL. The slug is what
// Grafana derives from the title; a wrong slug would only cost a redirect.
const ComponentPath = "/d/" + ComponentUID + "/buildkite-deployments-component"

// schemaVersion is the classic dashboard schema Grafana 11.0 writes. The SDK defaults to a
// Grafana 12 value; these dashboards use nothing newer than 11, and Grafana 12 migrates up.
const schemaVersion = 39

// datasource points every query at the dashboard's datasource variable, never at a fixed uid, so
// the dashboards import into any Grafana whatever its Prometheus datasource is called.
var datasource = common.DataSourceRef{Type: ptr("prometheus"), Uid: ptr("${datasource}")}

// Label matchers shared by the deployment panels. Both variables are regex matchers so that the
// "All" value (.*) and multi-selections work.
const (
	sel     = `component=~"$component",environment=~"$environment"`
	selComp = `component=~"$component"`
	// selProd is for panels that are about production by definition (the overview's success ratio).
	selProd = `component=~"$component",environment="production"`
	// minDeployments is the alert rules' minimum-deployments guard: fewer deployments than this in
	// a window and an SLO says nothing.
	minDeployments = 3
)

func ptr[T any](v T) *T { return &v }

// query is a range query, the default for time series.
func query(ref, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().RefId(ref).Datasource(datasource).Expr(expr).Range()
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

// instant is an instant query: stats and tables show one value per series, and an instant
// query costs one evaluation instead of one per step.
func instant(ref, expr, legend string) *prometheus.DataqueryBuilder {
	q := prometheus.NewDataqueryBuilder().RefId(ref).Datasource(datasource).Expr(expr).Instant()
	if legend != "" {
		q = q.LegendFormat(legend)
	}
	return q
}

// tableQuery is an instant query in table format: one row per series, labels as columns.
func tableQuery(ref, expr string) *prometheus.DataqueryBuilder {
	return instant(ref, expr, "").Format(prometheus.PromQueryFormatTable)
}

// thresholds builds absolute thresholds: base colour, then (value, colour) pairs.
func thresholds(base string, steps ...any) *dashboard.ThresholdsConfigBuilder {
	ts := []dashboard.Threshold{{Value: nil, Color: base}}
	for i := 0; i+1 < len(steps); i += 2 {
		ts = append(ts, dashboard.Threshold{Value: ptr(toFloat(steps[i])), Color: steps[i+1].(string)})
	}
	return dashboard.NewThresholdsConfigBuilder().Mode(dashboard.ThresholdsModeAbsolute).Steps(ts)
}

func toFloat(v any) float64 {
	switch v := v.(type) {
	case int:
		return float64(v)
	case float64:
		return v
	}
	panic(fmt.Sprintf("threshold value %v is not a number", v))
}

func byThresholds() *dashboard.FieldColorBuilder {
	return dashboard.NewFieldColorBuilder().Mode(dashboard.FieldColorModeIdThresholds)
}

func lastValue() *common.ReduceDataOptionsBuilder {
	return common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})
}

// valueText maps exact values to text and colour (0/1 gauges such as failing or up).
func valueText(pairs ...string) dashboard.ValueMapping {
	opts := map[string]dashboard.ValueMappingResult{}
	for i := 0; i+2 < len(pairs); i += 3 {
		opts[pairs[i]] = dashboard.ValueMappingResult{Text: ptr(pairs[i+1]), Color: ptr(pairs[i+2]), Index: ptr(int32(i / 3))}
	}
	return dashboard.ValueMapping{ValueMap: &dashboard.ValueMap{Type: dashboard.MappingTypeValueToText, Options: opts}}
}

// rangeText maps [from, to) to a text and colour; nil bounds are open.
func rangeText(from, to *float64, text, color string, index int32) dashboard.ValueMapping {
	return dashboard.ValueMapping{RangeMap: &dashboard.RangeMap{
		Type: dashboard.MappingTypeRangeToText,
		Options: dashboard.DashboardRangeMapOptions{
			From: from, To: to,
			Result: dashboard.ValueMappingResult{Text: ptr(text), Color: ptr(color), Index: ptr(index)},
		},
	}}
}

// noData shows a word instead of NaN/null: a histogram with no observations in the range gives NaN.
func noData(text string, index int32) dashboard.ValueMapping {
	return dashboard.ValueMapping{SpecialValueMap: &dashboard.SpecialValueMap{
		Type: dashboard.MappingTypeSpecialValue,
		Options: dashboard.DashboardSpecialValueMapOptions{
			Match:  dashboard.SpecialValueMatchNullAndNan,
			Result: dashboard.ValueMappingResult{Text: ptr(text), Color: ptr("text"), Index: ptr(index)},
		},
	}}
}

// withCommon adds what every dashboard shares: tags, time settings, the variables and the
// dashboards-link dropdown that keeps the time range and the variables.
func withCommon(b *dashboard.DashboardBuilder, uid, from string, extraVars ...cog.Builder[dashboard.VariableModel]) *dashboard.DashboardBuilder {
	b = b.Uid(uid).
		Tags(Tags).
		Timezone("utc").
		Time(from, "now").
		Refresh("1m").
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		WithVariable(dashboard.NewDatasourceVariableBuilder("datasource").Label("Data source").Type("prometheus")).
		WithVariable(dashboard.NewQueryVariableBuilder("component").
			Label("Component").
			Query(dashboard.StringOrMap{String: ptr("label_values(buildkite_component_info, component)")}).
			Definition("label_values(buildkite_component_info, component)").
			Datasource(datasource).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalCaseInsensitiveAsc).
			Multi(true).
			IncludeAll(true).
			AllValue(".*")).
		WithVariable(dashboard.NewQueryVariableBuilder("environment").
			Label("Environment").
			Query(dashboard.StringOrMap{String: ptr(`label_values(buildkite_deployments_total{component=~"$component"}, environment)`)}).
			Definition(`label_values(buildkite_deployments_total{component=~"$component"}, environment)`).
			Datasource(datasource).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalCaseInsensitiveAsc).
			Current(dashboard.VariableOption{Text: dashboard.StringOrArrayOfString{String: ptr("production")}, Value: dashboard.StringOrArrayOfString{String: ptr("production")}}).
			IncludeAll(true).
			AllValue(".*"))
	for _, v := range extraVars {
		b = b.WithVariable(v)
	}
	return b.Link(dashboard.NewDashboardLinkBuilder("Buildkite deployments").
		Type(dashboard.DashboardLinkTypeDashboards).
		Tags([]string{Tag}).
		AsDropdown(true).
		IncludeVars(true).
		KeepTime(true))
}

// componentLink is the data link from a table cell holding a component name to the component
// dashboard, keeping the time range and the environment.
func componentLink() []dashboard.DynamicConfigValue {
	return []dashboard.DynamicConfigValue{{Id: "links", Value: []map[string]any{{
		"title": "Deployments of ${__value.text}",
		"url":   ComponentPath + "?var-component=${__value.text}&${environment:queryparam}&${__url_time_range}",
	}}}}
}

// rename is the "organize" transformation: drop the Time columns of instant tables and give the
// value columns readable names.
func rename(names map[string]string, order ...string) dashboard.DataTransformerConfig {
	exclude := map[string]bool{"Time": true}
	for i := 1; i <= 10; i++ {
		exclude[fmt.Sprintf("Time %d", i)] = true
	}
	index := map[string]int{}
	for i, n := range order {
		index[n] = i
	}
	return dashboard.DataTransformerConfig{Id: "organize", Options: map[string]any{
		"excludeByName": exclude,
		"renameByName":  names,
		"indexByName":   index,
	}}
}
