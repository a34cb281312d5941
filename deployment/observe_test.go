package deployment

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// TestApplyStateKeepsTheState: applying a prefix of the records with ApplyState and the rest with
// ApplyObserved gives the rest the same observations, and the series the same state, as applying
// everything with ApplyObserved; and ApplyObserved observes what Apply puts in the histograms.
func TestApplyStateKeepsTheState(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 0, 0, 0, 0, time.UTC)
	for seed := range uint64(20) {
		rng := rand.New(rand.NewPCG(seed, 3))
		var recs []store.Record
		at := t0
		for i := range 200 {
			at = at.Add(time.Duration(rng.IntN(7200)) * time.Second)
			fin := at
			if rng.IntN(8) == 0 {
				fin = at.Add(-time.Duration(rng.IntN(86400)) * time.Second) // a late arrival
			}
			recs = append(recs, store.Record{Key: fmt.Sprint(i), Component: []string{"a", "b"}[rng.IntN(2)], Environment: "production",
				Pipeline: "o/p", State: []string{"passed", "failed", "canceled", "skipped"}[rng.IntN(4)], FinishedAt: fin,
				StartedAt: fin.Add(-time.Minute), LeadTimeSeconds: float64(rng.IntN(3) - 1), ApprovalWaitSeconds: float64(rng.IntN(3) - 1)})
		}
		full, part := NewAggregate(), NewAggregate()
		k := rng.IntN(len(recs))
		var want, got []Observation
		var recoveries uint64
		for i, r := range recs {
			o := full.ApplyObserved(r)
			if o.HasRecovery {
				recoveries++
			}
			if i < k {
				part.ApplyState(r)
				continue
			}
			want = append(want, o)
			got = append(got, part.ApplyObserved(r))
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("seed %d, %d records by ApplyState: observations differ (-all observed +prefix by state):\n%s", seed, k, diff)
		}
		if diff := cmp.Diff(full.Envs, part.Envs, cmp.AllowUnexported(envState{})); diff != "" {
			t.Errorf("seed %d: series state differs:\n%s", seed, diff)
		}
		var hist uint64
		for _, h := range full.Recovery {
			hist += h.Count
		}
		if hist != recoveries {
			t.Errorf("seed %d: %d recoveries observed, the histograms count %d", seed, recoveries, hist)
		}
	}
}
