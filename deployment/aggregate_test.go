package deployment

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

func rec(key, state string, finished time.Time, dur time.Duration) store.Record {
	return store.Record{Key: key, Component: "c", Environment: "production", Pipeline: "o/p", State: state,
		StartedAt: finished.Add(-dur), FinishedAt: finished, LeadTimeSeconds: -1, ApprovalWaitSeconds: -1}
}

func TestAggregateFailingAndRecovery(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAggregate()
	a.Apply(rec("1", "passed", t0, time.Minute))
	a.Apply(rec("2", "failed", t0.Add(time.Hour), time.Minute))
	a.Apply(rec("3", "canceled", t0.Add(2*time.Hour), time.Minute))
	a.Apply(rec("4", "failed", t0.Add(3*time.Hour), time.Minute))
	// A late record of an old failure: counted, but it does not change what is failing.
	a.Apply(rec("5", "failed", t0.Add(30*time.Minute), time.Minute))
	es := a.Envs[envKey("c", "production")]
	if !es.Failing || !es.FailedSince.Equal(t0.Add(time.Hour)) {
		t.Fatalf("after failures: %+v", es)
	}
	a.Apply(rec("6", "passed", t0.Add(5*time.Hour), time.Minute))
	if es.Failing {
		t.Error("still failing after a pass")
	}
	h := a.Recovery[envKey("c", "production")]
	if h == nil || h.Count != 1 || h.Sum != (4*time.Hour).Seconds() {
		t.Errorf("recovery = %+v, want one of 4h (first failure → next pass)", h)
	}
	if got := a.Deployments[joinKey("c", "production", "o/p", "failed")]; got != 3 {
		t.Errorf("failed = %d, want 3", got)
	}
	if d := a.Duration[joinKey("c", "production", "canceled")]; d != nil {
		t.Errorf("canceled deployments have a duration: %+v", d)
	}
}

func TestHistogramBuckets(t *testing.T) {
	var h histogram
	bounds := []float64{10, 100}
	for _, v := range []float64{1, 10, 11, 100, 1000} {
		h.observe(bounds, v)
	}
	if diff := cmp.Diff([]uint64{2, 4}, h.snapshot(bounds).Cumulative()); diff != "" {
		t.Errorf("cumulative (-want +got):\n%s", diff)
	}
	if h.Count != 5 || h.Sum != 1122 {
		t.Errorf("count %d sum %v", h.Count, h.Sum)
	}
}

// TestFoldEqualsApply: compacting any prefix of the log into the base and replaying the rest
// gives the same aggregate as applying every record.
func TestFoldEqualsApply(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []store.Record
	for i := range 500 {
		r := rec(fmt.Sprint(i), []string{"passed", "failed", "canceled"}[rng.IntN(3)], t0.Add(time.Duration(i)*time.Hour), time.Duration(rng.IntN(3600))*time.Second)
		r.Environment = []string{"production", "staging"}[rng.IntN(2)]
		r.LeadTimeSeconds = float64(rng.IntN(100000)) - 10
		r.ApprovalWaitSeconds = float64(rng.IntN(5000)) - 100
		r.Version, r.Commit = fmt.Sprint("v", i), sha(i)
		recs = append(recs, r)
	}
	all := NewAggregate()
	for _, r := range recs {
		all.Apply(r)
	}
	want, err := all.marshalBase()
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{0, 1, 250, 499, 500} {
		base, err := Fold(nil, recs[:cut])
		if err != nil {
			t.Fatal(err)
		}
		// Fold twice: a base of a base.
		base, err = Fold(base, nil)
		if err != nil {
			t.Fatal(err)
		}
		a, err := UnmarshalAggregate(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs[cut:] {
			a.Apply(r)
		}
		got, _ := a.marshalBase()
		var w, g any
		_ = json.Unmarshal(want, &w)
		_ = json.Unmarshal(got, &g)
		if diff := cmp.Diff(w, g); diff != "" {
			t.Errorf("cut %d: fold + replay differs from apply (-apply +fold):\n%s", cut, diff)
		}
	}
}

func TestUnmarshalAggregateErrors(t *testing.T) {
	if _, err := UnmarshalAggregate([]byte(`{"version": 99}`)); err == nil || !strings.Contains(err.Error(), "version 99") {
		t.Errorf("future version: %v", err)
	}
	if _, err := UnmarshalAggregate([]byte(`[`)); err == nil {
		t.Error("garbage accepted")
	}
	a, err := UnmarshalAggregate([]byte(`{"version": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	a.Apply(rec("k", "passed", time.Unix(10, 0), time.Second)) // no nil map panics
}

func TestApprovalWait(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(m int) buildkite.Timestamp { return ts(t0.Add(time.Duration(m) * time.Minute)) }
	for _, tc := range []struct {
		name string
		jobs []buildkite.Job
		want float64
	}{
		{"none", []buildkite.Job{{Type: "script"}}, -1},
		{"still blocked", []buildkite.Job{{Type: "manual", RunnableAt: at(0)}}, -1},
		{"one", []buildkite.Job{{Type: "manual", RunnableAt: at(5), UnblockedAt: at(25)}}, 1200},
		{"two gates add up", []buildkite.Job{{Type: "manual", RunnableAt: at(0), UnblockedAt: at(1)}, {Type: "manual", RunnableAt: at(10), UnblockedAt: at(12)}}, 180},
		{"no runnable_at: scheduled_at", []buildkite.Job{{Type: "manual", ScheduledAt: at(0), UnblockedAt: at(2)}}, 120},
		{"unblocked before gate: ignored", []buildkite.Job{{Type: "manual", RunnableAt: at(5), UnblockedAt: at(1)}}, -1},
	} {
		if got := approvalWaitIn(tc.jobs, Outcome{}); got != tc.want {
			t.Errorf("%s: approvalWaitIn = %v, want %v", tc.name, got, tc.want)
		}
	}
}
