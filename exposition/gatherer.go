package exposition

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// descs are the families as client_golang descriptors, in the order of families.
var descs = func() []*prometheus.Desc {
	d := make([]*prometheus.Desc, len(families))
	for i, f := range families {
		d[i] = prometheus.NewDesc(f.name, f.help, f.labels, nil)
	}
	return d
}()

// NewCollector returns the deployment series of s as client_golang const metrics, all at once:
// for tests and tools (testutil.CollectAndCompare, promlint), not for /metrics, where NewHandler
// serves the same series encoded once per snapshot. Do not register it on the registry given
// to NewHandler, which would serve every series twice.
func NewCollector(s *snapshot.Snapshot) prometheus.Collector { return collector{s} }

// NewGatherer returns a Gatherer of the deployment families of s (a pedantic registry holding
// NewCollector(s)), for testutil.GatherAndCompare and the like.
func NewGatherer(s *snapshot.Snapshot) prometheus.Gatherer {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollector(s))
	return reg
}

type collector struct{ s *snapshot.Snapshot }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range descs {
		ch <- d
	}
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	if c.s == nil {
		return
	}
	for i, f := range families {
		d := descs[i]
		var sr series
		f.each(c.s, &sr, func() {
			values := sr.values[:len(f.labels)]
			switch f.typ {
			case histogramType:
				h := sr.hist
				buckets := make(map[float64]uint64, len(h.Bounds))
				for j, n := range h.Cumulative() {
					buckets[h.Bounds[j]] = n
				}
				ch <- prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets, values...)
			case counterType:
				ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, sr.value, values...)
			default:
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, sr.value, values...)
			}
		})
	}
}
