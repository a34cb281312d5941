package deployment

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
	"unsafe"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// repackRecords are n records of three components, two environments and two pipelines each,
// every state, with build numbers, commits, versions, people and notes.
func repackRecords(rng *rand.Rand, t0 time.Time, from, n int) []store.Record {
	var recs []store.Record
	for i := from; i < from+n; i++ {
		r := rec(fmt.Sprint(i), []string{"passed", "failed", "canceled"}[rng.IntN(3)], t0.Add(time.Duration(i)*time.Hour), time.Duration(rng.IntN(7200))*time.Second)
		r.Component = fmt.Sprint("c", rng.IntN(3))
		r.Environment = []string{"production", "staging"}[rng.IntN(2)]
		r.Pipeline = fmt.Sprint("o/p", rng.IntN(2))
		r.LeadTimeSeconds = float64(rng.IntN(100000)) - 10
		r.ApprovalWaitSeconds = float64(rng.IntN(5000)) - 100
		r.Version, r.Commit, r.BuildNumber = fmt.Sprint("v", i%7), sha(i), i+1
		r.WebURL = fmt.Sprintf("https://buildkite.com/%s/builds/%d", r.Pipeline, i+1)
		r.DeployedBy, r.ReleaseNotes = fmt.Sprint("person ", i%5), fmt.Sprint("notes ", i)
		recs = append(recs, r)
	}
	return recs
}

// TestRepackedIsTheSame: the repacked aggregate holds the same state (its base, the fields the
// base leaves out, its snapshots) before and after more records, shares nothing with the
// original, and stores each key once across the maps keyed alike.
func TestRepackedIsTheSame(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAggregate()
	for _, r := range repackRecords(rng, t0, 0, 400) {
		a.Apply(r)
	}
	cfg := &config.Config{DefaultEnvironment: "production"}
	var catalog []backstage.Component
	for c := range 3 {
		catalog = append(catalog, backstage.Component{Label: fmt.Sprint("c", c), Pipelines: []backstage.PipelineRef{{Org: "o", Pipeline: "p0"}, {Org: "o", Pipeline: "p1"}}})
	}
	in := SnapshotInput{Config: cfg, Catalog: catalog, Taken: t0}
	// No snapshot of the original first, as in the collector: its histograms are not marked
	// shared, so it modifies their counts in place.
	b := a.Repacked()
	for _, kind := range []string{histDuration, histLeadTime, histRecovery, histApprovalWait} {
		for k, h := range a.histograms(kind) {
			c := b.histograms(kind)[k]
			if len(h.Counts) > 0 && &h.Counts[0] == &c.Counts[0] {
				t.Errorf("%s %q: the counts are the original's", kind, k)
			}
			if h.Native != nil && (h.Native == c.Native || len(h.Native.Buckets) > 0 && &h.Native.Buckets[0] == &c.Native.Buckets[0]) {
				t.Errorf("%s %q: the native buckets are the original's", kind, k)
			}
			for i, e := range h.Exemplars {
				if e != nil && e == c.Exemplars[i] {
					t.Errorf("%s %q: exemplar %d is the original's", kind, k, i)
				}
			}
		}
	}

	same := func(when string) {
		t.Helper()
		wa, err := a.marshalBase()
		if err != nil {
			t.Fatal(err)
		}
		wb, err := b.marshalBase()
		if err != nil {
			t.Fatal(err)
		}
		if string(wa) != string(wb) {
			t.Errorf("%s: the bases differ:\n%s", when, cmp.Diff(string(wa), string(wb)))
		}
		opts := cmp.Options{cmp.AllowUnexported(histogram{}), cmpopts.IgnoreFields(histogram{}, "shared", "snap"), cmpopts.IgnoreUnexported(Aggregate{})}
		if diff := cmp.Diff(a, b, opts); diff != "" {
			t.Errorf("%s: the aggregates differ (-original +repacked):\n%s", when, diff)
		}
		if diff := cmp.Diff(a.Snapshot(in), b.Snapshot(in)); diff != "" {
			t.Errorf("%s: the snapshots differ (-original +repacked):\n%s", when, diff)
		}
		for _, k := range []struct{ c, p string }{{"c0", "o/p0"}, {"c2", "o/p1"}, {"c9", "o/p0"}} {
			if a.HasDeployments(k.c, k.p) != b.HasDeployments(k.c, k.p) {
				t.Errorf("%s: HasDeployments(%s, %s) differs", when, k.c, k.p)
			}
		}
	}
	same("after the repack")

	// Records applied to the original only leave the copy as it was.
	frozen := b.Snapshot(in)
	base, _ := b.marshalBase()
	more := repackRecords(rng, t0, 400, 200)
	for _, r := range more {
		a.Apply(r)
	}
	if diff := cmp.Diff(frozen, b.Snapshot(in)); diff != "" {
		t.Errorf("records applied to the original changed the copy's snapshot:\n%s", diff)
	}
	if got, _ := b.marshalBase(); string(got) != string(base) {
		t.Error("records applied to the original changed the copy's base")
	}
	for _, r := range more {
		b.Apply(r)
	}
	same("after 200 more records applied to both")

	// One allocation per distinct key.
	data := func(m map[string]bool) map[string]*byte {
		out := map[string]*byte{}
		for k := range m {
			out[k] = unsafe.StringData(k)
		}
		return out
	}
	fresh := a.Repacked()
	pipelines := data(fresh.Pipelines)
	for k := range fresh.PipelineCreated {
		if pipelines[k] != unsafe.StringData(k) {
			t.Errorf("PipelineCreated key %q is a string of its own", k)
		}
	}
	for k := range fresh.LastBuilds {
		if pipelines[k] != unsafe.StringData(k) {
			t.Errorf("LastBuilds key %q is a string of its own", k)
		}
	}
	states := map[string]*byte{}
	for k := range fresh.LastFinished {
		states[k] = unsafe.StringData(k)
	}
	for k := range fresh.Duration {
		if states[k] != unsafe.StringData(k) {
			t.Errorf("Duration key %q is a string of its own", k)
		}
	}
	for k, es := range fresh.Envs {
		if es.DeployedCommit != "" && unsafe.StringData(es.DeployedCommit) == unsafe.StringData(a.Envs[k].DeployedCommit) {
			t.Errorf("env %q: the deployed commit still points into the original's memory", k)
		}
	}
}
