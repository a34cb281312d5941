package exposition

import (
	dto "github.com/prometheus/client_model/go"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// DefaultChunkSize is how many series the encoder renders into dto values before encoding them:
// large enough that per-chunk costs vanish, small enough that the dto values of a chunk (about
// 1 KB per histogram) stay a few megabytes whatever the size of the catalog.
const DefaultChunkSize = 2000

// slot is the dto of one series, reused from chunk to chunk: a snapshot of 10,000 components
// has ~1.5 million series, and allocating half a dozen proto messages for each would cost more
// than encoding them. Every pointer in m points into the slot itself or at the family's strings.
type slot struct {
	m       dto.Metric
	pairs   [maxLabels]dto.LabelPair
	ptrs    [maxLabels]*dto.LabelPair
	values  [maxLabels]string
	value   float64
	gauge   dto.Gauge
	counter dto.Counter

	hist       dto.Histogram
	count      uint64
	sum        float64
	buckets    []dto.Bucket
	bucketPtrs []*dto.Bucket
	bounds     []float64
	cumulative []uint64
}

// fill makes s.m the dto of sr, a series of f, as client_golang's const metrics would write it.
func (s *slot) fill(f *family, sr *series) {
	n := len(f.labels)
	for i := range n {
		s.values[i] = sr.values[i]
		s.pairs[i].Name = &f.labels[i]
		s.pairs[i].Value = &s.values[i]
		s.ptrs[i] = &s.pairs[i]
	}
	s.m.Label = s.ptrs[:n]
	s.m.Gauge, s.m.Counter, s.m.Histogram = nil, nil, nil
	switch f.typ {
	case gaugeType:
		s.value = sr.value
		s.gauge.Value = &s.value
		s.m.Gauge = &s.gauge
	case counterType:
		s.value = sr.value
		s.counter.Value = &s.value
		s.m.Counter = &s.counter
	case histogramType:
		s.fillHistogram(sr.hist)
		s.m.Histogram = &s.hist
	}
}

// fillHistogram writes h as prometheus.NewConstHistogram does: one cumulative bucket per
// distinct bound (its bucket map keeps the last count of a repeated bound), without +Inf, which
// the encoders add from the count.
func (s *slot) fillHistogram(h *snapshot.Histogram) {
	if need := len(h.Bounds); cap(s.buckets) < need {
		s.buckets = make([]dto.Bucket, need)
		s.bucketPtrs = make([]*dto.Bucket, need)
		s.bounds = make([]float64, need)
		s.cumulative = make([]uint64, need)
	}
	var acc uint64
	n := 0
	for i, b := range h.Bounds {
		if i < len(h.Counts) {
			acc += h.Counts[i]
		}
		if i+1 < len(h.Bounds) && h.Bounds[i+1] == b {
			continue
		}
		s.bounds[n], s.cumulative[n] = b, acc
		s.buckets[n].UpperBound = &s.bounds[n]
		s.buckets[n].CumulativeCount = &s.cumulative[n]
		s.bucketPtrs[n] = &s.buckets[n]
		n++
	}
	s.count, s.sum = h.Count, h.Sum
	s.hist.SampleCount = &s.count
	s.hist.SampleSum = &s.sum
	s.hist.Bucket = s.bucketPtrs[:n]
}

// chunker renders the families of a snapshot a chunk at a time and hands each chunk to a sink.
type chunker struct {
	slots   []slot
	metrics []*dto.Metric
	sink    sink
}

// sink encodes chunks. A family's chunks come in order, first set on the first one; end follows
// its last. A family without series gets neither.
type sink interface {
	chunk(f *family, metrics []*dto.Metric, first bool) error
	end(f *family) error
}

func newChunker(size int, sk sink) *chunker {
	if size <= 0 {
		size = DefaultChunkSize
	}
	return &chunker{slots: make([]slot, size), metrics: make([]*dto.Metric, 0, size), sink: sk}
}

// render encodes every family of s through the sink.
func (c *chunker) render(s *snapshot.Snapshot) error {
	for _, f := range families {
		if err := c.family(s, f); err != nil {
			return err
		}
	}
	return nil
}

func (c *chunker) family(s *snapshot.Snapshot, f *family) error {
	var (
		sr    series
		err   error
		first = true
	)
	flush := func() {
		if err == nil && len(c.metrics) > 0 {
			err = c.sink.chunk(f, c.metrics, first)
			first = false
		}
		clear(c.metrics) // the slots are reused; leave no pointer to them behind
		c.metrics = c.metrics[:0]
	}
	f.each(s, &sr, func() {
		if err != nil {
			return
		}
		sl := &c.slots[len(c.metrics)]
		sl.fill(f, &sr)
		c.metrics = append(c.metrics, &sl.m)
		if len(c.metrics) == len(c.slots) {
			flush()
		}
	})
	flush()
	if err != nil {
		return err
	}
	if first {
		return nil // no series: Gather leaves such a family out
	}
	return c.sink.end(f)
}
