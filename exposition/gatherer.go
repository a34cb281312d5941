package exposition

import (
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

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
func NewCollector(s *snapshot.Snapshot) prometheus.Collector { return collector{s: s} }

// NewCollectorWith is NewCollector with the bodies' options (native histograms).
func NewCollectorWith(s *snapshot.Snapshot, opts BodyOptions) prometheus.Collector {
	return collector{s: s, opts: opts}
}

// NewGatherer returns a Gatherer of the deployment families of s (a pedantic registry holding
// NewCollector(s)), for testutil.GatherAndCompare and the like.
func NewGatherer(s *snapshot.Snapshot) prometheus.Gatherer { return NewGathererWith(s, BodyOptions{}) }

// NewGathererWith is NewGatherer with the bodies' options.
func NewGathererWith(s *snapshot.Snapshot, opts BodyOptions) prometheus.Gatherer {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(NewCollectorWith(s, opts))
	return reg
}

type collector struct {
	s    *snapshot.Snapshot
	opts BodyOptions
}

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
				ch <- c.histogram(d, sr.hist, values)
			case counterType:
				if sr.created.IsZero() {
					ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, sr.value, values...)
				} else {
					ch <- prometheus.MustNewConstMetricWithCreatedTimestamp(d, prometheus.CounterValue, sr.value, sr.created, values...)
				}
			default:
				ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, sr.value, values...)
			}
		})
	}
}

// histogram is h as client_golang makes it: a const histogram (with its created timestamp),
// the native form added to its dto, and the exemplars of NewMetricWithExemplars, whose labels
// are then sorted (it builds them from a map).
func (c collector) histogram(d *prometheus.Desc, h *snapshot.Histogram, values []string) prometheus.Metric {
	buckets := make(map[float64]uint64, len(h.Bounds))
	for j, n := range h.Cumulative() {
		buckets[h.Bounds[j]] = n
	}
	var m prometheus.Metric
	if h.Created == 0 {
		m = prometheus.MustNewConstHistogram(d, h.Count, h.Sum, buckets, values...)
	} else {
		m = prometheus.MustNewConstHistogramWithCreatedTimestamp(d, h.Count, h.Sum, buckets, time.Unix(0, h.Created), values...)
	}
	if c.opts.NativeHistograms && h.Native != nil {
		m = withNative{m, h.Native}
	}
	var exemplars []prometheus.Exemplar
	for _, e := range h.Exemplars {
		if e == nil {
			continue
		}
		labels := prometheus.Labels{snapshot.ExemplarBuildLabel: e.Build}
		if e.Commit != "" {
			labels[snapshot.ExemplarCommitLabel] = e.Commit
		}
		exemplars = append(exemplars, prometheus.Exemplar{Value: e.Value, Labels: labels, Timestamp: e.At()})
	}
	if len(exemplars) == 0 {
		return m
	}
	return sortedExemplars{prometheus.MustNewMetricWithExemplars(m, exemplars...)}
}

// withNative adds a native histogram's schema, zero bucket, spans and deltas to a const
// histogram's dto: client_golang's NewConstNativeHistogram has no classic buckets.
type withNative struct {
	prometheus.Metric
	n *snapshot.Native
}

func (w withNative) Write(pb *dto.Metric) error {
	if err := w.Metric.Write(pb); err != nil {
		return err
	}
	var ns nativeSpans
	ns.set(w.n)
	h := pb.Histogram
	h.Schema, h.ZeroThreshold, h.ZeroCount = new(int32(snapshot.NativeSchema)), new(snapshot.NativeZeroThreshold), new(w.n.ZeroCount)
	h.PositiveSpan, h.PositiveDelta = ns.ptrs, ns.deltas
	return nil
}

// sortedExemplars sorts the labels of the exemplars NewMetricWithExemplars wrote, and drops the
// copies it makes in a native histogram's exemplar list: the bucket exemplars are the same, and
// Prometheus reads those when the list is empty (see slot.fillHistogram).
type sortedExemplars struct{ prometheus.Metric }

func (s sortedExemplars) Write(pb *dto.Metric) error {
	if err := s.Metric.Write(pb); err != nil {
		return err
	}
	sortLabels := func(e *dto.Exemplar) {
		if e != nil {
			slices.SortFunc(e.Label, func(a, b *dto.LabelPair) int { return strings.Compare(a.GetName(), b.GetName()) })
		}
	}
	for _, b := range pb.GetHistogram().GetBucket() {
		sortLabels(b.Exemplar)
	}
	if h := pb.GetHistogram(); h != nil {
		h.Exemplars = nil
	}
	return nil
}
