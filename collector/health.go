package collector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// refreshed ends the HELP of the health series: poll results change once per poll interval.
const refreshed = " Refreshed every poll interval."

var (
	upDesc = prometheus.NewDesc("buildkite_up",
		"1 when the last poll of every organization succeeded."+refreshed, nil, nil)
	lastPollDesc = prometheus.NewDesc("buildkite_exporter_last_successful_poll_timestamp_seconds",
		"When the last successful poll of the organization finished."+refreshed, []string{"organization"}, nil)
	pollDurationDesc = prometheus.NewDesc("buildkite_exporter_poll_duration_seconds",
		"How long the last poll of the organization took."+refreshed, []string{"organization"}, nil)
	pollErrorsDesc = prometheus.NewDesc("buildkite_exporter_poll_errors_total",
		"Polls of the organization that failed."+refreshed, []string{"organization"}, nil)
	storageErrorsDesc = prometheus.NewDesc("buildkite_exporter_storage_errors_total",
		"Failed writes to the deployment log; the poll is retried next cycle."+refreshed, nil, nil)
	unknownEnvsDesc = prometheus.NewDesc("buildkite_exporter_unknown_environments",
		"Environment names in use that the alias table does not know; the log names them."+refreshed, nil, nil)
)

// healthCollector reads the poller's health at scrape time, so that it is current even while a
// long cycle (a backfill) runs, and is not frozen into the deployment snapshot.
type healthCollector struct{ c *Collector }

// HealthCollector returns the collector of the exporter-health series: buildkite_up and the
// poll, storage, unknown-environment and backfill metrics. (Pipeline problems come with the
// deployment series, from the snapshot: they are tens of thousands of series at 10,000
// pipelines, encoded once per poll rather than at every scrape.) Register it on the exporter's registry.
func (c *Collector) HealthCollector() prometheus.Collector { return healthCollector{c} }

func (h healthCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{upDesc, lastPollDesc, pollDurationDesc, pollErrorsDesc, storageErrorsDesc, unknownEnvsDesc, backfillRemainingDesc} {
		ch <- d
	}
}

func (h healthCollector) Collect(ch chan<- prometheus.Metric) {
	c := h.c
	c.mu.Lock()
	up := 0.0
	if c.started && (c.catalogReady == nil || c.catalogReady()) {
		up = 1
	}
	for _, org := range sortedKeys(c.orgs) {
		o := c.orgs[org]
		if !o.active {
			continue
		}
		h := o.health
		if !h.LastOK {
			up = 0
		}
		if !h.LastSuccess.IsZero() {
			ch <- prometheus.MustNewConstMetric(lastPollDesc, prometheus.GaugeValue, unixSeconds(h.LastSuccess.UnixNano()), org)
		}
		if h.Polled {
			ch <- prometheus.MustNewConstMetric(pollDurationDesc, prometheus.GaugeValue, h.LastDuration.Seconds(), org)
		}
		ch <- prometheus.MustNewConstMetric(pollErrorsDesc, prometheus.CounterValue, float64(h.Errors), org)
		ch <- prometheus.MustNewConstMetric(backfillRemainingDesc, prometheus.GaugeValue, float64(o.progress.Load().remaining()), org)
	}
	storageErrors := c.storageErrors
	c.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(upDesc, prometheus.GaugeValue, up)
	ch <- prometheus.MustNewConstMetric(storageErrorsDesc, prometheus.CounterValue, float64(storageErrors))
	snap := c.Snapshot()
	ch <- prometheus.MustNewConstMetric(unknownEnvsDesc, prometheus.GaugeValue, float64(len(snap.UnknownEnvironments)))
}

func unixSeconds(ns int64) float64 { return float64(ns) / 1e9 }
