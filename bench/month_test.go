package main

import (
	"flag"
	"fmt"
	"runtime"
	"testing"
	"testing/synctest"
	"time"

	"github.com/go-kit/log"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/collector"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/cputime"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// Flags of the simulated month (go test ./bench -run TestMonth -args -month-days=30
// -month-scale=1). Without them go test runs three days of a small organization, which checks
// the harness and the bounds at a small size.
var (
	flagMonthDays      = flag.Int("month-days", 0, "days of polling to simulate; 0 = 3 (of a small organization, unless -month-scale says otherwise)")
	flagMonthScale     = flag.Float64("month-scale", 0, "organization size of the month relative to the issue's (1 = 20,000 pipelines, 2,000 annotated, 20,000 builds/day); 0 = 0.01")
	flagMonthInterval  = flag.Duration("month-interval", pollInterval, "--poll.interval of the month")
	flagMonthRetention = flag.Duration("month-retention", day, "--storage.retention of the month: short, so that what it bounds (records, keys, commit first-seen times) stops growing within the month")
)

const (
	// monthBackfill is the month's --history.backfill: the fake holds no history (a month of
	// polling does not need the 90 days the backfill figures do), so the first cycle reads an
	// empty hour.
	monthBackfill = time.Hour
	// fakeKeeps is how long the fake keeps a finished build (DeleteFinishedBefore, once a day):
	// the poller never lists further back than its 2-minute overlap, and the simulation retries
	// a failure within 20 minutes of it.
	fakeKeeps = time.Hour
)

// monthDay is what the harness measured at the end of one simulated day.
type monthDay struct {
	heapInUse, heapLive uint64 // after a forced GC
	goroutines          int
	cpu                 time.Duration // process CPU during the day
	cycles, requests    int
	deployments         int // finished in annotated pipelines during the day
	series              int // buildkite_deployments_total series in /metrics
	fakeBuilds          int // the fake holds, after deleting those older than fakeKeeps
}

// TestMonth polls the benchmark organization for a simulated month: the real collector and
// client against the fake, in fake time, with a bbolt log as the exporter has. The organization
// builds as in the steady state (liveSim, without probes): 20,000 builds a day at scale 1, 2,000
// of them deployments of annotated pipelines, 9% failed, a third of those retried once finished.
// At the end of every day it scrapes /metrics and requires every deployment series to count
// exactly what the simulation finished (deployments of the last minutes may not be visible yet),
// deletes the fake's builds older than an hour, forces a GC and reads the heap and the goroutines.
// The heap of the last day must be that of a reference day past the retention, grown at most in
// proportion to the deployment series (which keep appearing for weeks: a component's first
// failure in an environment adds its series), and the goroutines those of the first day.
func TestMonth(t *testing.T) {
	if testing.Short() {
		t.Skip("days of polling")
	}
	days, scale := *flagMonthDays, *flagMonthScale
	if days == 0 {
		days = 3
	}
	if scale == 0 {
		scale = 0.01
	}
	interval, retention := *flagMonthInterval, *flagMonthRetention
	m := issueScale(scale, 0)
	f := buildkitetest.New()
	ds := m.load(f, epoch) // the pipelines, no history
	comps := m.components()
	dir := t.TempDir()
	figs := newFigures(*flagOut)
	defer func() {
		if err := figs.flush(); err != nil {
			t.Error(err)
		}
	}()
	t.Logf("month: %d days of %d pipelines (%d annotated), %.0f builds/day, polled every %v, retention %v", days, m.Pipelines, m.Annotated, m.BuildsPerDay, interval, retention)

	var stats []monthDay
	var exact bool
	var deployments, retries int
	cpuAll := cputime.Process()
	synctest.Test(t, func(t *testing.T) {
		checkEpoch(t)
		st, err := store.OpenBolt(dir, store.BoltOptions{Logger: log.NewNopLogger()})
		if err != nil {
			t.Fatal(err)
		}
		r := startCollector(t, f, comps, monthBackfill, "bkua_month", func(o *collector.Options) {
			o.PollInterval, o.Retention, o.Log = interval, retention, st
		})
		r.waitAppends(t, 1, time.Second)
		// Events fall half-way between whole seconds, where the poller's ticks are not.
		time.Sleep(time.Until(time.Now().Truncate(time.Second).Add(1500 * time.Millisecond)))
		simStart := time.Now()
		sim := newLiveSim(ds, f, simStart, interval).withoutProbes()
		expected := map[string]float64{}
		type event struct {
			key string
			at  time.Time
		}
		var recent []event // deployments that may not be visible yet
		// A failure retried before a cycle listed it is counted when the retry finishes (its
		// jobs show it): until then it may not be visible, whatever its age. At a 10-minute
		// interval most retries (1 to 20 minutes after the failure) come before the next cycle.
		type buildRef struct{ pipeline, number int }
		awaiting := map[buildRef]string{}
		// A deployment shows in /metrics at the latest at the end of the first cycle that starts
		// after it finished: an interval and a cycle. A minute is ample for a cycle here.
		visible := interval + time.Minute
		exact = true
		deleted := 0
		day := monthDay{}
		cpu := cputime.Process()
		r.log.drain()
		r.api.reset()
		f.ResetRequests()
		for d := 1; d <= days; d++ {
			end := simStart.Add(time.Duration(d) * 24 * time.Hour)
			for {
				// Step to the first half-second at or after the next event, as a step of a second
				// at a time would apply it.
				next := sim.due()
				if !next.Before(end) {
					break
				}
				if wait := next.Sub(simStart); wait%time.Second != 0 {
					next = simStart.Add(wait.Truncate(time.Second) + time.Second)
				}
				time.Sleep(time.Until(next))
				done, err := sim.advance(time.Now())
				if err != nil {
					t.Fatal(err)
				}
				for _, ev := range done {
					if !ev.annotated {
						continue
					}
					k := deploymentsKey(m, ev.pipeline, ev.env, ev.state)
					expected[k]++
					recent = append(recent, event{k, ev.at})
					day.deployments++
					ref := buildRef{ev.pipeline, ev.number}
					if ev.retrying {
						awaiting[ref] = k
					}
					if fk, ok := awaiting[ref]; ok && ev.retried {
						recent = append(recent, event{fk, ev.at}) // visible from the retry's finish on
						delete(awaiting, ref)
					}
				}
			}
			time.Sleep(time.Until(end))
			synctest.Wait() // the collector is idle: between cycles, or waiting for its budget
			now := time.Now()
			counts := scrapeDeployments(t, r)
			pending := map[string]float64{}
			kept := recent[:0]
			for _, ev := range recent {
				if now.Sub(ev.at) < visible {
					pending[ev.key]++
					kept = append(kept, ev)
				}
			}
			recent = kept
			for _, k := range awaiting {
				pending[k]++
			}
			for k, want := range expected {
				if got := counts[k]; got > want || got < want-pending[k] {
					exact = false
					t.Errorf("day %d: /metrics counts %v deployments as %s, want %v (%v of them finished in the last %v or await their retry)", d, got, k, want, pending[k], visible)
				}
			}
			for k, got := range counts {
				if _, ok := expected[k]; !ok && got != 0 {
					exact = false
					t.Errorf("day %d: /metrics counts %v deployments as %s, which never deployed", d, got, k)
				}
			}
			day.series = len(counts)
			day.cycles = len(r.log.drain())
			day.requests = len(r.api.requests())
			r.api.reset()
			f.ResetRequests()
			deleted += f.DeleteFinishedBefore(now.Add(-fakeKeeps))
			day.fakeBuilds = int(sim.gen.n) - deleted // every build the simulation started, less those deleted
			day.goroutines = runtime.NumGoroutine()
			day.heapInUse, day.heapLive = heapAfterGC()
			c := cputime.Process()
			day.cpu, cpu = c-cpu, c
			deployments += day.deployments
			t.Logf("day %d: %d cycles, %d requests, %d deployments, %d series; heap in use %.1f MiB (live %.1f MiB), %d goroutines; the fake holds %d builds; %v of CPU",
				d, day.cycles, day.requests, day.deployments, day.series, float64(day.heapInUse)/mib, float64(day.heapLive)/mib, day.goroutines, day.fakeBuilds, day.cpu.Round(time.Millisecond))
			stats = append(stats, day)
			day = monthDay{}
			cpu = cputime.Process() // the measurement's own cost is not the day's
		}
		retries = sim.annRetries
		r.stop(t)
		if err := st.Close(); err != nil {
			t.Error(err)
		}
	})
	cpuTotal := cputime.Process() - cpuAll
	monthFigures(t, figs, m, stats, interval, retention, exact, deployments, retries, cpuTotal)
}

func heapAfterGC() (inUse, live uint64) {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse, ms.HeapAlloc
}

// monthFigures reports the month and checks its bounds.
func monthFigures(t *testing.T, figs *figures, m orgModel, stats []monthDay, interval, retention time.Duration, exact bool, deployments, retries int, cpu time.Duration) {
	if len(stats) == 0 {
		t.Fatal("no day was simulated")
	}
	days := len(stats)
	sec := fmt.Sprintf("month (%d days)", days)
	if m.Pipelines != 20000 {
		sec = fmt.Sprintf("month (%d days, %d pipelines)", days, m.Pipelines)
	}
	first, last := stats[0], stats[days-1]
	// The reference day is past the retention (what it bounds, records, keys and commit
	// first-seen times, is at its size from then on) and a third into the month: the catalog's
	// series keep appearing for weeks (a component's first failure or cancelation in an
	// environment adds its series), each with its share of the aggregate and the snapshot, so
	// the heap may grow with them, and no more.
	refDay := min(days, max(int((retention+day-1)/day)+1, (days+2)/3))
	ref := stats[refDay-1]
	growth := max(1, float64(last.series)/float64(max(1, ref.series)))
	bound := uint64(float64(ref.heapInUse)*growth*1.05) + 8*mib
	var cycles, requests int
	var maxHeap uint64
	for _, s := range stats {
		cycles += s.cycles
		requests += s.requests
		maxHeap = max(maxHeap, s.heapInUse)
	}
	figs.info(sec, "organization", float64(m.Pipelines), "pipelines", fmt.Sprintf("%d annotated, %.0f builds/day; no history before the month (backfill %v of nothing)", m.Annotated, m.BuildsPerDay, monthBackfill))
	figs.info(sec, "poll cycles", float64(cycles), "cycles", fmt.Sprintf("--poll.interval=%v for %d days of fake time, bbolt log, --storage.retention=%v", interval, days, retention))
	figs.info(sec, "requests per cycle (mean)", float64(requests)/float64(max(1, cycles)), "requests", fmt.Sprintf("%d requests in all", requests))
	figs.target(sec, "deployments counted exactly", float64(deployments), "deployments", "every series exact at every daily scrape", exact,
		fmt.Sprintf("finished in annotated pipelines, %d of them again after a retry once finished; /metrics scraped at the end of each day and compared with the simulation's count of every series", retries))
	heapOK := last.heapInUse <= bound
	figs.info(sec, "heap in use after day 1", float64(first.heapInUse)/mib, "MiB", fmt.Sprintf("after a forced GC; live %.1f MiB; %d deployment series", float64(first.heapLive)/mib, first.series))
	figs.info(sec, fmt.Sprintf("heap in use after day %d (retention reached)", refDay), float64(ref.heapInUse)/mib, "MiB", fmt.Sprintf("live %.1f MiB; %d deployment series", float64(ref.heapLive)/mib, ref.series))
	figs.target(sec, fmt.Sprintf("heap in use after day %d", days), float64(last.heapInUse)/mib, "MiB", fmt.Sprintf("≤ day %d × series growth (%.2f) × 1.05 + 8 MiB = %.1f", refDay, growth, float64(bound)/mib), heapOK,
		fmt.Sprintf("live %.1f MiB; %d deployment series; most of any day: %.1f MiB; the fake holds %d builds (the last hour's, and the running ones)", float64(last.heapLive)/mib, last.series, float64(maxHeap)/mib, last.fakeBuilds))
	gorOK := last.goroutines <= first.goroutines+2
	figs.target(sec, fmt.Sprintf("goroutines after day %d", days), float64(last.goroutines), "goroutines", fmt.Sprintf("≤ day 1 + 2 = %d", first.goroutines+2), gorOK, "")
	var lastCPU time.Duration
	for _, s := range stats[max(0, days-3):] {
		lastCPU += s.cpu
	}
	lastCycles := 0
	for _, s := range stats[max(0, days-3):] {
		lastCycles += s.cycles
	}
	figs.info(sec, "CPU per simulated day (mean)", (cpu / time.Duration(days)).Seconds(), "s",
		fmt.Sprintf("process CPU (exporter, fake and harness); %v for the whole month, set-up and daily scrapes included; day 1 %.1f s, day %d %.1f s", cpu.Round(time.Second), first.cpu.Seconds(), days, last.cpu.Seconds()))
	figs.info(sec, "CPU per poll cycle, last days", (lastCPU/time.Duration(max(1, lastCycles))).Seconds()*1e3, "cpu-ms",
		fmt.Sprintf("the last %d days' CPU / their %d cycles; it grows with the deployment series (snapshot rebuilt every cycle)", min(3, days), lastCycles))
	if !heapOK {
		t.Errorf("heap in use grew from %.1f MiB after day %d (%d series) to %.1f MiB after day %d (%d series), more than the series explain (%.1f MiB)",
			float64(ref.heapInUse)/mib, refDay, ref.series, float64(last.heapInUse)/mib, days, last.series, float64(bound)/mib)
	}
	if !gorOK {
		t.Errorf("goroutines grew from %d after day 1 to %d after day %d", first.goroutines, last.goroutines, days)
	}
	if deployments == 0 {
		t.Error("no deployment finished during the month")
	}
}
