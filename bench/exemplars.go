package main

import (
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// liveHeap is the heap in use after a full collection.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// exemplarFigures measures the memory exemplars add at n components: the live heap of an
// aggregate and its snapshot folded from the render stage's records, minus that of the same
// records without build numbers (which make no exemplar), everything else equal. It also
// counts what the snapshot holds of native buckets and created timestamps, by size.
func exemplarFigures(figs *figures, n int) error {
	sec := fmt.Sprintf("render %d components", n)
	end := time.Now()
	records := n * len(environments) * 3
	cfg := config.Default()
	in := deployment.SnapshotInput{Config: cfg, Catalog: benchCatalog(n), Polled: true, Taken: end}
	build := func(exemplars bool) (*deployment.Aggregate, *snapshot.Snapshot) {
		a := deployment.NewAggregate()
		for i := range records {
			r := benchRecord(i, n, end)
			if !exemplars {
				r.BuildNumber = 0
			}
			a.Apply(r)
		}
		return a, a.Snapshot(in)
	}
	base := liveHeap()
	a1, s1 := build(false)
	without := liveHeap() - base
	a2, s2 := build(true)
	with := liveHeap() - base - without
	runtime.KeepAlive(a1)
	runtime.KeepAlive(s1)

	var exemplars, hists, nativeBuckets int
	walk(s2, func(h *snapshot.Histogram) {
		hists++
		for _, e := range h.Exemplars {
			if e != nil {
				exemplars++
			}
		}
		if h.Native != nil {
			nativeBuckets += len(h.Native.Buckets)
		}
	})
	runtime.KeepAlive(a2)
	added := float64(with) - float64(without)
	note := fmt.Sprintf("live heap of the aggregate and snapshot of %d deployments: %.1f MiB with exemplars, %.1f MiB with the same records without build numbers (no exemplar); "+
		"%d exemplars in %d histograms, %.0f B each (Exemplar struct %d B, its build and commit strings, the per-histogram pointer slice; shared by the aggregate and every snapshot until the next observation)",
		records, float64(with)/mib, float64(without)/mib, exemplars, hists, added/float64(max(1, exemplars)), unsafe.Sizeof(snapshot.Exemplar{}))
	fmt.Fprintf(os.Stderr, "%s: memory exemplars add: %.1f MiB; %s\n", sec, added/mib, note)
	figs.info(sec, "memory exemplars add", added/mib, "MiB", note)
	nativeNote := fmt.Sprintf("%d populated native buckets (%d B each) in %d histograms, kept whether --metrics.native-histograms is on or not (they must be counted from the first record to be exact); "+
		"plus %d B per histogram for its Native pointer and Created time",
		nativeBuckets, unsafe.Sizeof(snapshot.NativeBucket{}), hists, unsafe.Sizeof(&snapshot.Native{})+unsafe.Sizeof(int64(0)))
	nativeBytes := float64(nativeBuckets)*float64(unsafe.Sizeof(snapshot.NativeBucket{})) + float64(hists)*float64(unsafe.Sizeof(snapshot.Native{})+unsafe.Sizeof(&snapshot.Native{})+unsafe.Sizeof(int64(0)))
	fmt.Fprintf(os.Stderr, "%s: native buckets and created timestamps (counted): %.1f MiB; %s\n", sec, nativeBytes/mib, nativeNote)
	figs.info(sec, "native buckets and created timestamps (counted, not measured)", nativeBytes/mib, "MiB", nativeNote)
	return nil
}

// walk calls fn for every histogram of s.
func walk(s *snapshot.Snapshot, fn func(*snapshot.Histogram)) {
	for i := range s.Components {
		for j := range s.Components[i].Environments {
			e := &s.Components[i].Environments[j]
			for _, h := range append(e.Duration[:], e.LeadTime, e.Recovery, e.ApprovalWait) {
				if h != nil {
					fn(h)
				}
			}
		}
	}
}
