package collector

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// TestSimulatedMonth polls a small organization every 5 minutes for 30 days of fake time: three
// pipelines deploy about every 2 hours, one deployment in ten fails and half of those are retried
// to pass, and a pipeline no component names runs all the time. Every count stays exact, and
// neither the heap nor the goroutines grow with the days: the poller keeps what the metrics need,
// not what it read.
func TestSimulatedMonth(t *testing.T) {
	if testing.Short() {
		t.Skip("a month of polling")
	}
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		slugs := []string{"shop-deploy", "api-deploy", "web-deploy"}
		var comps []backstage.Component
		for _, s := range slugs {
			comps = append(comps, component(s[:len(s)-len("-deploy")], s))
		}
		const interval = 5 * time.Minute
		h := start(t, f, comps, func(o *Options) { o.PollInterval, o.Log = interval, store.NewMemory() })
		want := map[string]float64{}
		n := 0
		type retry struct {
			pipeline string
			number   int
			at       time.Time
		}
		var retries []retry
		var due []retry // retried, running
		var heapDay1, goroutinesDay1 uint64
		for day := range 30 {
			for cycle := range int(24 * time.Hour / interval) {
				now := time.Now()
				if cycle%24 == 0 { // every two hours, each pipeline deploys
					for i, s := range slugs {
						n++
						state := "passed"
						if n%10 == 0 {
							state = "failed"
						}
						md := map[string]string{"environment": "production"}
						// Finished a minute ago, after the previous poll, as a build the API shows.
						b := finished(now.Add(-12*time.Minute), 10*time.Minute, state, md)
						b.Commit = sha(n)
						b.Jobs = []buildkite.Job{{Type: buildkite.JobTypeScript, Name: "deploy", State: state,
							CreatedAt: b.CreatedAt, RunnableAt: b.CreatedAt, StartedAt: b.StartedAt, FinishedAt: b.FinishedAt}}
						b = f.AddBuild(testOrg, s, b)
						comp := comps[i].Label
						want[deployments(comp, "production", s, state)]++
						if state == "failed" && n%20 == 0 {
							retries = append(retries, retry{s, b.Number, now.Add(time.Hour)})
							want[deployments(comp, "production", s, "passed")]++
						}
					}
				}
				for len(retries) > 0 && !now.Before(retries[0].at) {
					r := retries[0]
					retries = retries[1:]
					if err := f.RetryBuild(testOrg, r.pipeline, r.number); err != nil {
						t.Fatal(err)
					}
					due = append(due, r)
				}
				f.AddBuild(testOrg, "monorepo-ci", finished(now.Add(-3*time.Minute), time.Minute, "passed", nil))
				if cycle%24 == 12 { // a retried build runs for a while, then passes
					for _, r := range due {
						open, _ := f.Build(testOrg, r.pipeline, r.number)
						last := open.Jobs[len(open.Jobs)-1]
						if err := f.FinishJob(testOrg, r.pipeline, r.number, last.ID, "passed", last.CreatedAt.Time, now.Add(-time.Second)); err != nil {
							t.Fatal(err)
						}
						if err := f.FinishBuild(testOrg, r.pipeline, r.number, "passed", now); err != nil {
							t.Fatal(err)
						}
					}
					due = nil
				}
				h.next()
			}
			if day == 0 {
				heapDay1, goroutinesDay1 = heapInUse(), uint64(runtime.NumGoroutine())
			}
		}
		// Retries after the last cycle are not made: their passes are not counted.
		for _, r := range append(retries, due...) {
			want[deployments(comps[slices.Index(slugs, r.pipeline)].Label, "production", r.pipeline, "passed")]--
		}
		got := h.metrics()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
		heap, goroutines := heapInUse(), uint64(runtime.NumGoroutine())
		t.Logf("%d deployments over 30 days; heap in use %d kB after day 1, %d kB after day 30; goroutines %d, %d",
			n, heapDay1>>10, heap>>10, goroutinesDay1, goroutines)
		// The fake keeps every build (about 9,000), the poller only counters: the heap may grow
		// by what the fake holds, not by what each cycle read.
		if heap > heapDay1+32<<20 {
			t.Errorf("heap grew from %d kB to %d kB over the month", heapDay1>>10, heap>>10)
		}
		if goroutines > goroutinesDay1+2 {
			t.Errorf("goroutines grew from %d to %d over the month", goroutinesDay1, goroutines)
		}
		if fmt.Sprint(got[series("buildkite_up")]) != "1" {
			t.Errorf("buildkite_up = %v at the end of the month", got[series("buildkite_up")])
		}
	})
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
