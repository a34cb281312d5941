package exposition

import (
	"math"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/types/known/timestamppb"

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

	// created is the counter's or histogram's CreatedTimestamp.
	created timestamppb.Timestamp
	// Exemplars, one per bucket at most; their values and label values point into the
	// snapshot, which is immutable.
	exemplars  []dto.Exemplar
	exTimes    []timestamppb.Timestamp
	exPairs    [][2]dto.LabelPair
	exPairPtrs [][2]*dto.LabelPair
	// Native buckets.
	zeroCount uint64
	native    nativeSpans
}

// Names and constants the dto points at.
var (
	exemplarBuild  = snapshot.ExemplarBuildLabel
	exemplarCommit = snapshot.ExemplarCommitLabel
	nativeSchema   = int32(snapshot.NativeSchema)
	nativeZero     = snapshot.NativeZeroThreshold
	positiveInf    = math.Inf(1)
)

// options are what the flags change in the deployment body.
type options struct {
	// native adds the native (exponential) form to histograms that have one.
	native bool
}

// fill makes s.m the dto of sr, a series of f, as client_golang's const metrics would write it.
func (s *slot) fill(f *family, sr *series, opts options) {
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
		s.counter.CreatedTimestamp = s.createdAt(sr.created)
		s.m.Counter = &s.counter
	case histogramType:
		s.fillHistogram(sr.hist, opts)
		s.m.Histogram = &s.hist
	}
}

// createdAt is t as the slot's CreatedTimestamp, nil when unknown (zero).
func (s *slot) createdAt(t time.Time) *timestamppb.Timestamp {
	if t.IsZero() {
		return nil
	}
	s.created.Seconds, s.created.Nanos = t.Unix(), int32(t.Nanosecond())
	return &s.created
}

// fillHistogram writes h as prometheus.NewConstHistogram does: one cumulative bucket per
// distinct bound (its bucket map keeps the last count of a repeated bound), without +Inf, which
// the encoders add from the count.
//
// Exemplars go where prometheus.NewMetricWithExemplars puts them: each on the first bucket
// whose bound is not below its value, the one above every bound on an explicit +Inf bucket.
// Unlike it, they are not repeated in Histogram.Exemplars with the native form: Prometheus
// reads a native histogram's exemplars from its buckets when that list is empty (and 2.42 only
// from there), and the copies would add a fifth to the protobuf body.
func (s *slot) fillHistogram(h *snapshot.Histogram, opts options) {
	if need := len(h.Bounds) + 1; cap(s.buckets) < need { // +1: an +Inf bucket for an exemplar
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
		s.buckets[n].Exemplar = nil
		s.bucketPtrs[n] = &s.buckets[n]
		n++
	}
	s.count, s.sum = h.Count, h.Sum
	s.hist.SampleCount = &s.count
	s.hist.SampleSum = &s.sum
	s.hist.CreatedTimestamp = nil
	if h.Created != 0 {
		s.created.Seconds, s.created.Nanos = h.Created/1e9, int32(h.Created%1e9)
		s.hist.CreatedTimestamp = &s.created
	}
	s.hist.Schema, s.hist.ZeroThreshold, s.hist.ZeroCount = nil, nil, nil
	s.hist.PositiveSpan, s.hist.PositiveDelta, s.hist.Exemplars = nil, nil, nil
	native := opts.native && h.Native != nil
	if native {
		s.zeroCount = h.Native.ZeroCount
		s.native.set(h.Native)
		s.hist.Schema, s.hist.ZeroThreshold, s.hist.ZeroCount = &nativeSchema, &nativeZero, &s.zeroCount
		s.hist.PositiveSpan, s.hist.PositiveDelta = s.native.ptrs, s.native.deltas
	}
	n = s.fillExemplars(h, n)
	s.hist.Bucket = s.bucketPtrs[:n]
}

// fillExemplars puts h's exemplars on the n buckets written, adding the +Inf one if needed,
// and returns the number of buckets.
func (s *slot) fillExemplars(h *snapshot.Histogram, n int) int {
	if len(h.Exemplars) == 0 {
		return n
	}
	if need := len(h.Exemplars); cap(s.exemplars) < need {
		s.exemplars = make([]dto.Exemplar, need)
		s.exTimes = make([]timestamppb.Timestamp, need)
		s.exPairs = make([][2]dto.LabelPair, need)
		s.exPairPtrs = make([][2]*dto.LabelPair, need)
	}
	inf := false
	for i, e := range h.Exemplars {
		if e == nil {
			continue
		}
		x := &s.exemplars[i]
		s.exPairs[i][0].Name, s.exPairs[i][0].Value = &exemplarBuild, &e.Build
		s.exPairPtrs[i][0] = &s.exPairs[i][0]
		x.Label = s.exPairPtrs[i][:1]
		if e.Commit != "" {
			s.exPairs[i][1].Name, s.exPairs[i][1].Value = &exemplarCommit, &e.Commit
			s.exPairPtrs[i][1] = &s.exPairs[i][1]
			x.Label = s.exPairPtrs[i][:2]
		}
		x.Value = &e.Value
		s.exTimes[i].Seconds, s.exTimes[i].Nanos = e.Time/1e9, int32(e.Time%1e9)
		x.Timestamp = &s.exTimes[i]
		b := 0
		for b < n && s.bounds[b] < e.Value {
			b++
		}
		if b == n && !inf {
			s.bounds[n], s.cumulative[n] = positiveInf, h.Count
			s.buckets[n].UpperBound = &s.bounds[n]
			s.buckets[n].CumulativeCount = &s.cumulative[n]
			s.bucketPtrs[n] = &s.buckets[n]
			inf = true
			n++
		}
		s.buckets[b].Exemplar = x
	}
	return n
}

// chunker renders the families of a snapshot a chunk at a time and hands each chunk to a sink.
type chunker struct {
	opts    options
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
		sl.fill(f, &sr, c.opts)
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
