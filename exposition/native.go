package exposition

import (
	dto "github.com/prometheus/client_model/go"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// nativeSpans holds n's positive buckets as a native histogram carries them: a span per run of
// consecutive bucket indexes (its offset from the end of the previous span, the first from
// index 0), and per bucket the difference of its count from the previous bucket's (the first
// from 0). Empty buckets between runs are not written. Its slices are reused from one
// histogram to the next.
type nativeSpans struct {
	offsets []int32
	lengths []uint32
	deltas  []int64
	spans   []dto.BucketSpan
	ptrs    []*dto.BucketSpan
}

// set makes ns the spans and deltas of n; the dto spans point into ns.
func (ns *nativeSpans) set(n *snapshot.Native) {
	ns.offsets, ns.lengths, ns.deltas = ns.offsets[:0], ns.lengths[:0], ns.deltas[:0]
	var prevIndex int32
	var prevCount int64
	for i, b := range n.Buckets {
		switch {
		case i == 0:
			ns.offsets, ns.lengths = append(ns.offsets, b.Index), append(ns.lengths, 0)
		case b.Index != prevIndex+1:
			ns.offsets, ns.lengths = append(ns.offsets, b.Index-prevIndex-1), append(ns.lengths, 0)
		}
		ns.lengths[len(ns.lengths)-1]++
		ns.deltas = append(ns.deltas, int64(b.Count)-prevCount)
		prevIndex, prevCount = b.Index, int64(b.Count)
	}
	if cap(ns.spans) < len(ns.offsets) {
		ns.spans = make([]dto.BucketSpan, len(ns.offsets))
		ns.ptrs = make([]*dto.BucketSpan, len(ns.offsets))
	}
	ns.ptrs = ns.ptrs[:len(ns.offsets)]
	for i := range ns.offsets {
		ns.spans[i].Offset, ns.spans[i].Length = &ns.offsets[i], &ns.lengths[i]
		ns.ptrs[i] = &ns.spans[i]
	}
}
