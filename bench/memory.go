package main

import (
	"bufio"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/cputime"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// makeStore writes records deployments of comps components into a new bbolt store at dir, in
// batches of 10,000 (as store/bench_test.go does), with the organization's backfill done.
func makeStore(dir string, comps, records int) error {
	if _, err := os.Stat(filepath.Join(dir, store.DBFileName)); err == nil {
		return fmt.Errorf("mkstore: %s already holds a store; give an empty directory", dir)
	}
	began := time.Now()
	st, err := store.OpenBolt(dir, store.BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		return err
	}
	end := time.Now()
	const batchSize = 10_000
	for i := 0; i < records; i += batchSize {
		b := store.Batch{Records: make([]store.Record, 0, batchSize)}
		for j := i; j < min(records, i+batchSize); j++ {
			b.Records = append(b.Records, benchRecord(j, comps, end))
		}
		if i+batchSize >= records {
			b.Watermarks = map[string]store.Watermark{benchOrg: {FinishedFrom: end, BackfillDone: true}}
		}
		if _, err := st.Append(b); err != nil {
			st.Close()
			return err
		}
	}
	if err := st.Close(); err != nil {
		return err
	}
	fi, err := os.Stat(filepath.Join(dir, store.DBFileName))
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "mkstore: %d deployments of %d components in %s (%.0f MB) in %v\n",
		records, comps, dir, float64(fi.Size())/1e6, time.Since(began).Round(time.Millisecond))
	return nil
}

// procStatus reads the memory lines of /proc/self/status, in bytes; nil where there is no /proc.
func procStatus() map[string]float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return nil
	}
	defer f.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || !strings.HasSuffix(v, " kB") {
			continue
		}
		n, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(v, " kB")), 64)
		if err == nil {
			out[k] = n * 1024
		}
	}
	return out
}

const mib = 1 << 20

// memCycles is how many poll cycles the memory stage's cycle CPU figure is the mean of.
const memCycles = 3

// replayLogger catches the collector's "Replayed the deployment log" line: when the replay ended
// and how many records it read.
type replayLogger struct {
	began    time.Time
	beganCPU time.Duration
	mu       sync.Mutex
	at, cpu  time.Duration
	records  int
}

func (l *replayLogger) Log(kv ...any) error {
	var msg string
	records := -1
	for i := 0; i+1 < len(kv); i += 2 {
		switch kv[i] {
		case "msg":
			msg, _ = kv[i+1].(string)
		case "records":
			records, _ = kv[i+1].(int)
		}
	}
	if strings.HasPrefix(msg, "Replayed the deployment log") {
		l.mu.Lock()
		l.at, l.cpu, l.records = time.Since(l.began), cputime.Process()-l.beganCPU, records
		l.mu.Unlock()
	}
	return nil
}

// memoryFigures opens the store at dir as the exporter does at start, replays it into a real
// collector wired as the exporter's (exporter.go) with a catalog of comps components, and reports
// the start time and the memory after the replay and first snapshot, with the text body cached
// and warmed by the poller, and with all three bodies (protobuf, OpenMetrics, text) warmed.
func memoryFigures(figs *figures, dir string, comps int, heapProfile string) error {
	if _, err := os.Stat(filepath.Join(dir, store.DBFileName)); err != nil {
		return fmt.Errorf("memory: no store at %s; make one with bench mkstore: %w", dir, err)
	}
	sec := fmt.Sprintf("memory %d components", comps)
	if lim := os.Getenv("GOMEMLIMIT"); lim != "" {
		sec += ", GOMEMLIMIT=" + lim
	}
	before := procStatus()
	began, beganCPU := time.Now(), cputime.Process()
	st, err := store.OpenBolt(dir, store.BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		return err
	}
	defer st.Close()
	rl := &replayLogger{began: began, beganCPU: beganCPU}
	// The poller waits after each publish (and Warm) until released: nothing runs beside the
	// measurements.
	e, err := startExporter(exporterOpts{log: st, comps: benchCatalog(comps), interval: 10 * time.Millisecond, logger: rl, hold: true})
	if err != nil {
		return err
	}
	defer e.stop()
	if _, err := e.waitFirstCycle(); err != nil {
		return err
	}
	rl.mu.Lock()
	replay, replayCPU, records := rl.at, rl.cpu, rl.records
	rl.mu.Unlock()
	if records <= 0 {
		return errors.New("memory: the collector did not log its replay; cannot tell how many records it read")
	}
	figs.info(sec, "deployments replayed", float64(records), "records", "")
	figs.info(sec, "replay (open, load, replay)", replay.Seconds(), "s", fmt.Sprintf("until the collector logged the end of its replay; %.1f s CPU", replayCPU.Seconds()))
	figs.info(sec, "start to first snapshot", e.start.Seconds(), "s", "replay, first poll cycle (nothing new), snapshot; no body encoded: no scraper asked yet")

	measure := func(when string, target bool) {
		runtime.GC()
		var mst runtime.MemStats
		runtime.ReadMemStats(&mst)
		ps := procStatus()
		note := fmt.Sprintf("heap in use %.0f MiB, Go Sys %.0f MiB; RSS anon %.0f MiB + file %.0f MiB (mmapped store pages); peak RSS so far %.0f MiB",
			float64(mst.HeapInuse)/mib, float64(mst.Sys)/mib, ps["RssAnon"]/mib, ps["RssFile"]/mib, ps["VmHWM"]/mib)
		fmt.Fprintf(os.Stderr, "%s: %s: RSS %.0f MiB; %s\n", sec, when, ps["VmRSS"]/mib, note)
		if target {
			figs.target(sec, "RSS "+when, ps["VmRSS"]/mib, "MiB", "≤ 200 MiB", ps["VmRSS"] <= 200*mib, note)
		} else {
			figs.info(sec, "RSS "+when, ps["VmRSS"]/mib, "MiB", note)
		}
		figs.info(sec, "RSS anon "+when, ps["RssAnon"]/mib, "MiB", "without the store's mmapped file pages, which the kernel can drop")
		figs.info(sec, "Go heap in use "+when, float64(mst.HeapInuse)/mib, "MiB", "")
	}
	scrapeAll := func(formats []bodyFormat) error {
		for _, f := range formats {
			rec := scrape(e.handler, f.accept, true)
			if rec.Code != http.StatusOK {
				return fmt.Errorf("memory: /metrics (%s) answered %d", f.name, rec.Code)
			}
		}
		return nil
	}
	figs.info(sec, "RSS before opening the store", before["VmRSS"]/mib, "MiB", "the bench binary alone")
	measure("after replay and first snapshot, no body cached", false)

	// A scraper without an Accept header: the first scrape encodes text, the next poll warms it.
	cpu, wall, rec, err := timedScrape(e.handler, "", true)
	if err != nil {
		return err
	}
	figs.info(sec, "first scrape of text 0.0.4 (encodes it)", wall.Seconds(), "s", fmt.Sprintf("%.0f ms CPU; gzip body %.1f MB", ms(cpu), float64(rec.Body.Len())/1e6))
	rec = nil
	if _, err := e.nextCycle(); err != nil {
		return err
	}
	measure("with the text body cached (warmed by the poller)", true)

	// Scrapers of the two other formats: every body cached.
	if err := scrapeAll(bodyFormats); err != nil {
		return err
	}
	if _, err := e.nextCycle(); err != nil {
		return err
	}
	measure("with every body cached (protobuf, OpenMetrics, text warmed by the poller)", true)
	// What the poller spends on a cycle that rebuilds the snapshot and warms all three bodies,
	// in this process (the heap of the whole log's aggregate: GC work depends on it).
	var msBefore, msAfter runtime.MemStats
	runtime.ReadMemStats(&msBefore)
	cpu0, t0 := cputime.Process(), time.Now()
	for range memCycles {
		if _, err := e.nextCycle(); err != nil {
			return err
		}
	}
	cycleCPU, cycleWall := cputime.Process()-cpu0, time.Since(t0)
	runtime.ReadMemStats(&msAfter)
	figs.info(sec, "poll cycle with nothing new, every body warmed", ms(cycleCPU)/memCycles, "cpu-ms/cycle",
		fmt.Sprintf("mean of %d cycles, %.0f ms wall each; %.1f GCs a cycle, %.0f MB allocated a cycle", memCycles, ms(cycleWall)/memCycles,
			float64(msAfter.NumGC-msBefore.NumGC)/memCycles, float64(msAfter.TotalAlloc-msBefore.TotalAlloc)/memCycles/1e6))
	measure("with every body cached, after three more cycles", false)
	if heapProfile != "" {
		f, err := os.Create(heapProfile)
		if err != nil {
			return err
		}
		if err := pprof.WriteHeapProfile(f); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
	}
	cpu, wall, rec, err = timedScrape(e.handler, "", true)
	if err != nil {
		return err
	}
	figs.info(sec, "scrape of text 0.0.4 after a poll (serves the warmed body)", wall.Seconds(), "s", fmt.Sprintf("%.1f ms CPU; gzip body %.1f MB", ms(cpu), float64(rec.Body.Len())/1e6))
	rec = nil
	if err := scrapeAll(bodyFormats); err != nil {
		return err
	}
	measure("after a scrape of each format", false)
	debug.FreeOSMemory()
	ps := procStatus()
	figs.info(sec, "RSS after returning free memory to the OS", ps["VmRSS"]/mib, "MiB", "debug.FreeOSMemory, as the Go scavenger does over minutes")
	return e.stop()
}
