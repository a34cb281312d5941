package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/cputime"
	deployreport "github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/report"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// reportTarget is issue 18's target for a report over the 1,000,000-record log.
const reportTarget = 5 * time.Second

// reportFigures makes the report command's report of the last window over the store at dir, as
// the command does (read-only open, every record replayed, the rows of every component), and
// measures its time and memory; then the rendering of each format. The memory to compare with
// is the exporter's own on the same log (the memory stage: about 150 MiB RSS after its replay).
func reportFigures(figs *figures, dir string, window time.Duration, cpuProfile string) error {
	if _, err := os.Stat(filepath.Join(dir, store.DBFileName)); err != nil {
		return fmt.Errorf("deployreport: no store at %s; make one with bench mkstore: %w", dir, err)
	}
	sec := "report command"
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(deployreport.MemoryLimit) // as the report command does
	} else {
		sec += ", GOMEMLIMIT=" + os.Getenv("GOMEMLIMIT")
	}
	before := procStatus()
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); _ = f.Close() }()
	}
	began, beganCPU := time.Now(), cputime.Process()
	l, err := store.OpenBoltReadOnly(dir, store.BoltOptions{})
	if err != nil {
		return err
	}
	defer l.Close()
	now := time.Now()
	rep, err := deployreport.Build(context.Background(), l, deployreport.Options{Since: now.Add(-window), Until: now, GeneratedAt: now})
	if err != nil {
		return err
	}
	wall, cpu := time.Since(began), cputime.Process()-beganCPU
	if p := os.Getenv("REPORT_HEAP_PROFILE"); p != "" {
		// The builder's live heap at the end of the replay, what the GC's target doubles.
		st, _ := l.Load()
		b, err := deployreport.NewBuilder(st, deployreport.Options{Since: now.Add(-window), Until: now, GeneratedAt: now})
		if err != nil {
			return err
		}
		if err := l.Replay(func(r store.Record) error { b.Add(r); return nil }); err != nil {
			return err
		}
		runtime.GC()
		f, err := os.Create(p)
		if err != nil {
			return err
		}
		_ = pprof.WriteHeapProfile(f)
		_ = f.Close()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		fmt.Fprintf(os.Stderr, "live heap at the end of the replay: %.0f MiB\n", float64(m.HeapInuse)/mib)
		runtime.KeepAlive(b)
	}
	var mst runtime.MemStats
	runtime.ReadMemStats(&mst)
	ps := procStatus()
	var inWindow int
	for _, r := range rep.Rows {
		inWindow += r.Current.Deployments + r.Previous.Deployments
	}
	figs.info(sec, "records read", float64(rep.RecordsRead), "records", fmt.Sprintf("window %v and the previous one: %d deployments, %d rows", window, inWindow, len(rep.Rows)))
	figs.target(sec, "report over the whole log (open, replay, compute)", wall.Seconds(), "s", "< 5 s", wall < reportTarget,
		fmt.Sprintf("%.1f s CPU; %.2f µs a record", cpu.Seconds(), float64(wall.Microseconds())/float64(max(rep.RecordsRead, 1))))
	note := fmt.Sprintf("RSS %.0f MiB = anon %.0f MiB + file %.0f MiB (the store's mmapped pages, dropped at the end of the replay); peak RSS %.0f MiB; Go heap in use %.0f MiB, Sys %.0f MiB, %d GCs",
		ps["VmRSS"]/mib, ps["RssAnon"]/mib, ps["RssFile"]/mib, ps["VmHWM"]/mib, float64(mst.HeapInuse)/mib, float64(mst.Sys)/mib, mst.NumGC)
	fmt.Fprintf(os.Stderr, "%s: %d records in %v (%.1f s CPU); %s\n", sec, rep.RecordsRead, wall.Round(time.Millisecond), cpu.Seconds(), note)
	figs.target(sec, "RSS after the report", ps["VmRSS"]/mib, "MiB", "under the exporter's own (≈ 150 MiB)", ps["VmRSS"] <= 150*mib, note)
	figs.info(sec, "peak RSS during the report", ps["VmHWM"]/mib, "MiB", "includes the store's file pages the replay maps; the exporter's own replay peaks the same way")
	figs.info(sec, "RSS before opening the store", before["VmRSS"]/mib, "MiB", "the bench binary alone")
	runtime.GC()
	runtime.ReadMemStats(&mst)
	figs.info(sec, "Go heap live after the report", float64(mst.HeapInuse)/mib, "MiB", "after a GC, the report still held (its rows)")
	for _, format := range deployreport.Formats {
		t0, c0 := time.Now(), cputime.Process()
		cw := &countingWriter{}
		if err := rep.Write(cw, format); err != nil {
			return err
		}
		figs.info(sec, "render "+format, time.Since(t0).Seconds(), "s", fmt.Sprintf("%.0f ms CPU; %.1f MB", ms(cputime.Process()-c0), float64(cw.n)/1e6))
	}
	return nil
}

type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countingWriter)(nil)
