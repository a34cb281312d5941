package collector

import (
	"errors"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/deployment"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/exposition"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// flakyLog fails Append while failing is set.
type flakyLog struct {
	*store.Memory
	mu      sync.Mutex
	failing bool
}

func (l *flakyLog) setFailing(v bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.failing = v
}

func (l *flakyLog) Append(b store.Batch) ([]store.Record, error) {
	l.mu.Lock()
	failing := l.failing
	l.mu.Unlock()
	if failing {
		return nil, errors.New("disk full")
	}
	return l.Memory.Append(b)
}

func TestRestartContinuesCountersWithoutBackfill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		for i := range 5 {
			f.AddBuild(testOrg, "shop", finished(now.Add(-time.Duration(i+1)*24*time.Hour), time.Minute, []string{"passed", "failed"}[i%2], nil))
		}
		comps := []backstage.Component{component("shop", "shop")}
		mem := store.NewMemory()
		h := start(t, f, comps, withLog(mem))
		f.AddBuild(testOrg, "shop", finished(time.Now(), time.Minute, "passed", nil))
		h.next()
		h.next()
		before := h.metrics()
		h.stop()

		f.ResetRequests()
		time.Sleep(time.Hour) // down for an hour
		f.AddBuild(testOrg, "shop", finished(time.Now().Add(-30*time.Minute), time.Minute, "failed", nil))
		h2 := start(t, f, comps, withLog(mem))
		after := h2.metrics()
		for _, k := range []string{
			deployments("shop", "production", "shop", "passed"),
			series("buildkite_deployment_duration_seconds_count", "component", "shop", "environment", "production", "state", "passed"),
			series("buildkite_deployment_lead_time_seconds_count", "component", "shop", "environment", "production"),
			series("buildkite_deployment_recovery_seconds_count", "component", "shop", "environment", "production"),
		} {
			if before[k] != after[k] {
				t.Errorf("%s: %v before the restart, %v after", k, before[k], after[k])
			}
		}
		if got, want := after[deployments("shop", "production", "shop", "failed")], before[deployments("shop", "production", "shop", "failed")]+1; got != want {
			t.Errorf("failed deployments after restart = %v, want %v (the one finished while down)", got, want)
		}
		for _, r := range f.Requests() {
			if from := r.Query.Get("finished_from"); from != "" {
				ft, err := time.Parse(time.RFC3339, from)
				if err != nil {
					t.Fatal(err)
				}
				if time.Since(ft) > 2*time.Hour {
					t.Errorf("restart re-read history from %s: the watermark was not used", from)
				}
			}
		}
	})
}

func TestStorageFailureKeepsWatermarkAndRetries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		f.AddBuild(testOrg, "shop", finished(now.Add(-time.Hour), time.Minute, "passed", nil))
		fl := &flakyLog{Memory: store.NewMemory(), failing: true}
		h := start(t, f, []backstage.Component{component("shop", "shop")}, withLog(fl))
		expect(t, h.metrics(), map[string]float64{
			series("buildkite_exporter_storage_errors_total"):                                         1,
			deployments("shop", "production", "shop", "passed"):                                       0, // nothing stored, nothing counted
			series("buildkite_deployments_running", "component", "shop", "environment", "production"): 0,
		})
		st, _ := fl.Load()
		if wm, ok := st.Watermarks[testOrg]; ok {
			t.Errorf("watermark moved past unstored records: %+v", wm)
		}
		fl.setFailing(false)
		// Long enough that a watermark-based read would miss the build: the retry must backfill.
		time.Sleep(time.Hour)
		h.next()
		expect(t, h.metrics(), map[string]float64{
			series("buildkite_exporter_storage_errors_total"):   1,
			deployments("shop", "production", "shop", "passed"): 1,
		})
		h.next()
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop", "passed"): 1})
	})
}

func TestFailingOrganizationDoesNotStopOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		f.AddBuild(testOrg, "shop", finished(now.Add(-time.Hour), time.Minute, "passed", nil))
		broken := backstage.Component{Name: "ghost", Namespace: "default", Label: "ghost",
			Pipelines: []backstage.PipelineRef{{Org: "no-such-org", Pipeline: "deploy"}}}
		h := start(t, f, []backstage.Component{component("shop", "shop"), broken})
		got := h.metrics()
		expect(t, got, map[string]float64{
			deployments("shop", "production", "shop", "passed"):                                                1,
			series("buildkite_up"):                                                                             0,
			series("buildkite_exporter_poll_errors_total", "organization", "no-such-org"):                      1,
			series("buildkite_exporter_poll_errors_total", "organization", testOrg):                            0,
			series("buildkite_exporter_last_successful_poll_timestamp_seconds", "organization", testOrg):       float64(now.Unix()),
			series("buildkite_exporter_last_successful_poll_timestamp_seconds", "organization", "no-such-org"): absent,
			// The ghost component is known from the catalog: zero counters for its default environment.
			deployments("ghost", "production", "deploy", "passed"): absent,
			series("buildkite_deployments_total", "component", "ghost", "environment", "production", "pipeline", "no-such-org/deploy", "state", "passed"): 0,
		})
		if h.c.Ready() {
			t.Error("Ready with an organization never polled successfully")
		}
		h.catalog.set([]backstage.Component{component("shop", "shop")})
		h.next()
		expect(t, h.metrics(), map[string]float64{
			series("buildkite_up"): 1,
			series("buildkite_exporter_poll_errors_total", "organization", "no-such-org"): absent,
		})
		if !h.c.Ready() {
			t.Error("not Ready after every organization was polled")
		}
	})
}

func TestCompactionKeepsCounters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		states := []string{"failed", "passed", "canceled", "failed", "failed", "passed", "passed", "failed"}
		for i, s := range states {
			f.AddBuild(testOrg, "shop", finished(now.Add(-time.Duration(len(states)-i)*24*time.Hour), time.Duration(i)*time.Minute, s, nil))
		}
		comps := []backstage.Component{component("shop", "shop")}
		mem := store.NewMemory()
		h := start(t, f, comps, withLog(mem))
		before := h.metrics()
		h.stop()
		// Compact everything older than 3 days, as a restart with that retention does.
		if err := mem.Compact(now.Add(-3*24*time.Hour), deployment.Fold); err != nil {
			t.Fatal(err)
		}
		st, _ := mem.Load()
		if len(st.Base) == 0 {
			t.Fatal("nothing was compacted; the test would prove nothing")
		}
		h2 := start(t, f, comps, withLog(mem))
		after := h2.metrics()
		ignore := func(k string) bool {
			return strings.HasPrefix(k, "buildkite_exporter_last_successful") || strings.HasPrefix(k, "buildkite_exporter_poll_duration")
		}
		lastBuilds := 0
		for k := range before {
			if strings.HasPrefix(k, "buildkite_deployment_last_build_number") {
				lastBuilds++
			}
		}
		if lastBuilds != 3 {
			t.Errorf("%d buildkite_deployment_last_build_number series before the restart, want one per state", lastBuilds)
		}
		for k := range before {
			if ignore(k) {
				delete(before, k)
				delete(after, k)
			}
		}
		if diff := cmp.Diff(before, after); diff != "" {
			t.Errorf("series changed across compaction and restart (-before +after):\n%s", diff)
		}
	})
}

func TestRunFailsOnUnreadableBase(t *testing.T) {
	mem := store.NewMemory()
	if _, err := mem.Append(store.Batch{Records: []store.Record{{Key: "k", State: "passed", FinishedAt: time.Unix(1, 0)}}}); err != nil {
		t.Fatal(err)
	}
	if err := mem.Compact(time.Unix(2, 0), func([]byte, []store.Record) ([]byte, error) { return []byte("{not json"), nil }); err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{Client: newTestClient(t, buildkitetest.New()), Catalog: func() []backstage.Component { return nil }, Log: mem, PollInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "compacted deployment summary") {
		t.Errorf("Run = %v, want an error about the compacted summary", err)
	}
}

// TestCompactionKeepsExemplarsNativeCreated: the exemplars, native buckets and created
// timestamps a restart serves after compacting the log are those served before, in the
// protobuf families with native histograms on (which carry all three).
func TestCompactionKeepsExemplarsNativeCreated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		now := time.Now()
		f := newFake()
		states := []string{"failed", "passed", "canceled", "failed", "failed", "passed", "passed", "failed"}
		for i, s := range states {
			f.AddBuild(testOrg, "shop", finished(now.Add(-time.Duration(len(states)-i)*24*time.Hour), time.Duration(i)*time.Minute, s, nil))
		}
		comps := []backstage.Component{component("shop", "shop")}
		mem := store.NewMemory()
		opts := exposition.BodyOptions{NativeHistograms: true}
		h := start(t, f, comps, withLog(mem))
		before, err := exposition.NewGathererWith(h.c.Snapshot(), opts).Gather()
		if err != nil {
			t.Fatal(err)
		}
		h.stop()
		var exemplars, natives, created int
		for _, mf := range before {
			for _, m := range mf.GetMetric() {
				if hist := m.GetHistogram(); hist != nil {
					for _, b := range hist.GetBucket() {
						if b.GetExemplar() != nil {
							exemplars++
						}
					}
					if hist.Schema != nil {
						natives++
					}
					if hist.CreatedTimestamp != nil {
						created++
					}
				}
				if m.GetCounter().GetCreatedTimestamp() != nil {
					created++
				}
			}
		}
		if exemplars == 0 || natives == 0 || created == 0 {
			t.Fatalf("before compaction: %d exemplars, %d native histograms, %d created timestamps; the test would prove nothing", exemplars, natives, created)
		}
		if err := mem.Compact(now.Add(-3*24*time.Hour), deployment.Fold); err != nil {
			t.Fatal(err)
		}
		if st, _ := mem.Load(); len(st.Base) == 0 {
			t.Fatal("nothing was compacted; the test would prove nothing")
		}
		h2 := start(t, f, comps, withLog(mem))
		after, err := exposition.NewGathererWith(h2.c.Snapshot(), opts).Gather()
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(before, after, protocmp.Transform()); diff != "" {
			t.Errorf("deployment families changed across compaction and restart (-before +after):\n%s", diff)
		}
	})
}
