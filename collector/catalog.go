package collector

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
)

// catalogRefreshed ends the HELP of the catalog series: they describe the last catalog refresh.
const catalogRefreshed = " Cached, refreshed every --catalog.refresh-interval and on SIGHUP."

var (
	catalogComponentsDesc = prometheus.NewDesc("buildkite_exporter_catalog_components",
		"Number of Backstage components linked to at least one Buildkite pipeline."+catalogRefreshed,
		nil, nil)
	catalogErrorsDesc = prometheus.NewDesc("buildkite_exporter_catalog_errors",
		"Number of catalog problems found by the last refresh, by reason; each skipped an entity, file or source."+catalogRefreshed,
		[]string{"reason"}, nil)
	catalogLastRefreshSuccessDesc = prometheus.NewDesc("buildkite_exporter_catalog_last_refresh_success",
		"Whether the last catalog refresh read every source (1) or kept the last good components of a failed one (0).",
		nil, nil)
	catalogLastRefreshSuccessTimestampDesc = prometheus.NewDesc("buildkite_exporter_catalog_last_refresh_success_timestamp_seconds",
		"Unix time of the last catalog refresh that read every source; 0 before the first.",
		nil, nil)
)

// catalogCollector renders the Backstage catalog Snapshot as const metrics.
type catalogCollector struct {
	snapshot func() *backstage.Snapshot
}

var _ prometheus.Collector = (*catalogCollector)(nil)

// NewCatalogCollector returns a collector of the catalog's health series (components, errors
// by reason, the last refresh). snapshot is called once per scrape (backstage.Watcher.Snapshot);
// the scrape never reads files or calls Backstage. buildkite_component_info, a series per linked
// pipeline, comes with the deployment series from the poll's snapshot (package exposition).
func NewCatalogCollector(snapshot func() *backstage.Snapshot) prometheus.Collector {
	return &catalogCollector{snapshot: snapshot}
}

func (c *catalogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- catalogComponentsDesc
	ch <- catalogErrorsDesc
	ch <- catalogLastRefreshSuccessDesc
	ch <- catalogLastRefreshSuccessTimestampDesc
}

func (c *catalogCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.snapshot()
	if s == nil {
		s = &backstage.Snapshot{}
	}
	ch <- prometheus.MustNewConstMetric(catalogComponentsDesc, prometheus.GaugeValue, float64(len(s.Components)))

	// Every known reason is exported, 0 when absent, so that rules see the series before the
	// first error; a reason this collector does not know yet is exported too.
	counts := make(map[backstage.Reason]int, len(backstage.Reasons))
	for _, r := range backstage.Reasons {
		counts[r] = 0
	}
	for _, p := range s.Problems {
		counts[p.Reason]++
	}
	for r, n := range counts {
		ch <- prometheus.MustNewConstMetric(catalogErrorsDesc, prometheus.GaugeValue, float64(n), string(r))
	}

	success := 0.0
	if s.LastRefreshSuccess {
		success = 1
	}
	ch <- prometheus.MustNewConstMetric(catalogLastRefreshSuccessDesc, prometheus.GaugeValue, success)
	ts := 0.0
	if !s.LastSuccess.IsZero() {
		ts = float64(s.LastSuccess.UnixNano()) / 1e9
	}
	ch <- prometheus.MustNewConstMetric(catalogLastRefreshSuccessTimestampDesc, prometheus.GaugeValue, ts)
}
