package collector

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
)

var catalogMetricNames = []string{
	"buildkite_exporter_catalog_components",
	"buildkite_exporter_catalog_errors",
	"buildkite_exporter_catalog_last_refresh_success",
	"buildkite_exporter_catalog_last_refresh_success_timestamp_seconds",
}

func TestCatalogCollector(t *testing.T) {
	snap := &backstage.Snapshot{
		Components: []backstage.Component{
			{Name: "payments", Namespace: "finance", Label: "finance/payments", Owner: "group:finance/payments",
				Pipelines: []backstage.PipelineRef{{Org: "acme", Pipeline: "payments-deploy"}}},
			{Name: "shop", Namespace: "default", Label: "shop", Owner: "team-shop", System: "storefront", Lifecycle: "production",
				Pipelines: []backstage.PipelineRef{{Org: "acme", Pipeline: "shop-deploy-eu"}, {Org: "acme", Pipeline: "shop-deploy-us"}}},
		},
		Problems: []backstage.Problem{
			{Reason: backstage.ReasonInvalidAnnotation}, {Reason: backstage.ReasonInvalidAnnotation},
			{Reason: backstage.ReasonDuplicatePipeline},
		},
		LastRefreshSuccess: false,
		LastSuccess:        time.Unix(1700000000, 500_000_000),
	}
	c := NewCatalogCollector(func() *backstage.Snapshot { return snap })

	want := `
# HELP buildkite_exporter_catalog_components Number of Backstage components linked to at least one Buildkite pipeline. Cached, refreshed every --catalog.refresh-interval and on SIGHUP.
# TYPE buildkite_exporter_catalog_components gauge
buildkite_exporter_catalog_components 2
# HELP buildkite_exporter_catalog_errors Number of catalog problems found by the last refresh, by reason; each skipped an entity, file or source. Cached, refreshed every --catalog.refresh-interval and on SIGHUP.
# TYPE buildkite_exporter_catalog_errors gauge
buildkite_exporter_catalog_errors{reason="backstage_api"} 0
buildkite_exporter_catalog_errors{reason="component_spans_shards"} 0
buildkite_exporter_catalog_errors{reason="duplicate_component_label"} 0
buildkite_exporter_catalog_errors{reason="duplicate_entity"} 0
buildkite_exporter_catalog_errors{reason="duplicate_pipeline"} 1
buildkite_exporter_catalog_errors{reason="invalid_annotation"} 2
buildkite_exporter_catalog_errors{reason="invalid_entity"} 0
buildkite_exporter_catalog_errors{reason="location_cycle"} 0
buildkite_exporter_catalog_errors{reason="malformed_yaml"} 0
buildkite_exporter_catalog_errors{reason="misspelled_annotation"} 0
buildkite_exporter_catalog_errors{reason="misspelled_kind"} 0
buildkite_exporter_catalog_errors{reason="missing_name"} 0
buildkite_exporter_catalog_errors{reason="unknown_api_version"} 0
buildkite_exporter_catalog_errors{reason="unreadable_file"} 0
buildkite_exporter_catalog_errors{reason="unsupported_location"} 0
# HELP buildkite_exporter_catalog_last_refresh_success Whether the last catalog refresh read every source (1) or kept the last good components of a failed one (0).
# TYPE buildkite_exporter_catalog_last_refresh_success gauge
buildkite_exporter_catalog_last_refresh_success 0
# HELP buildkite_exporter_catalog_last_refresh_success_timestamp_seconds Unix time of the last catalog refresh that read every source; 0 before the first.
# TYPE buildkite_exporter_catalog_last_refresh_success_timestamp_seconds gauge
buildkite_exporter_catalog_last_refresh_success_timestamp_seconds 1.7000000005e+09
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), catalogMetricNames...); err != nil {
		t.Error(err)
	}
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(c); err != nil {
		t.Fatal(err)
	}
	if _, err := reg.Gather(); err != nil {
		t.Errorf("pedantic gather: %v", err)
	}

	// A component removed from the catalog stops being exported with the next snapshot.
	snap = &backstage.Snapshot{Components: snap.Components[1:2], LastRefreshSuccess: true, LastSuccess: time.Unix(1700000300, 0)}
	want = `
# HELP buildkite_exporter_catalog_last_refresh_success Whether the last catalog refresh read every source (1) or kept the last good components of a failed one (0).
# TYPE buildkite_exporter_catalog_last_refresh_success gauge
buildkite_exporter_catalog_last_refresh_success 1
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "buildkite_component_info", "buildkite_exporter_catalog_last_refresh_success"); err != nil {
		t.Error(err)
	}
}

func TestCatalogCollectorBeforeFirstRefresh(t *testing.T) {
	c := NewCatalogCollector(func() *backstage.Snapshot { return &backstage.Snapshot{} })
	// 11 error reasons at 0, no component, no success yet (timestamp 0).
	if n := testutil.CollectAndCount(c); n != len(backstage.Reasons)+3 {
		t.Errorf("%d series, want %d", n, len(backstage.Reasons)+3)
	}
	want := `
# HELP buildkite_exporter_catalog_last_refresh_success_timestamp_seconds Unix time of the last catalog refresh that read every source; 0 before the first.
# TYPE buildkite_exporter_catalog_last_refresh_success_timestamp_seconds gauge
buildkite_exporter_catalog_last_refresh_success_timestamp_seconds 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want), "buildkite_exporter_catalog_last_refresh_success_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	if n := testutil.CollectAndCount(NewCatalogCollector(func() *backstage.Snapshot { return nil })); n != len(backstage.Reasons)+3 {
		t.Errorf("nil snapshot: %d series", n)
	}
}
