package deployment

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

func numbered(key, state string, number int, finished time.Time) store.Record {
	r := rec(key, state, finished, time.Minute)
	r.BuildNumber, r.Version = number, "v"+key
	return r
}

func lastOf(t *testing.T, a *Aggregate) [snapshot.NumStates]snapshot.LastBuild {
	t.Helper()
	s := a.Snapshot(SnapshotInput{Config: config.Default(), Catalog: []backstage.Component{{
		Label: "c", Ref: "component:default/c", Pipelines: []backstage.PipelineRef{{Org: "o", Pipeline: "p"}},
	}}})
	for _, e := range s.Components[0].Environments {
		if e.Name == "production" {
			for _, d := range e.Deployments {
				if d.Pipeline == "o/p" {
					return d.Last
				}
			}
		}
	}
	t.Fatalf("no production deployments of o/p in %+v", s.Components[0])
	return [snapshot.NumStates]snapshot.LastBuild{}
}

// TestLastBuildNumber: the latest finished build per state wins by finish time, not by the
// order records arrive in (the poll overlap brings late ones), and survives compaction.
func TestLastBuildNumber(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	records := []store.Record{
		numbered("1", "passed", 10, t0),
		numbered("2", "failed", 11, t0.Add(time.Hour)),
		numbered("3", "passed", 13, t0.Add(3*time.Hour)),
		numbered("4", "failed", 9, t0.Add(-time.Hour)), // late arrival of an older failure
		numbered("5", "canceled", 12, t0.Add(2*time.Hour)),
	}
	a := NewAggregate()
	for _, r := range records {
		a.Apply(r)
	}
	want := [snapshot.NumStates]snapshot.LastBuild{
		{Number: 13, FinishedAt: t0.Add(3 * time.Hour), Version: "v3"},
		{Number: 11, FinishedAt: t0.Add(time.Hour), Version: "v2"},
		{Number: 12, FinishedAt: t0.Add(2 * time.Hour), Version: "v5"},
	}
	if diff := cmp.Diff(want, lastOf(t, a)); diff != "" {
		t.Errorf("applied (-want +got):\n%s", diff)
	}

	// Compaction: the first three records folded into a base, the rest applied on top.
	base, err := Fold(nil, records[:3])
	if err != nil {
		t.Fatal(err)
	}
	b, err := UnmarshalAggregate(base)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range records[3:] {
		b.Apply(r)
	}
	if diff := cmp.Diff(want, lastOf(t, b)); diff != "" {
		t.Errorf("after compaction (-want +got):\n%s", diff)
	}

	// A newer record without a number (an old log) hides the series rather than naming an
	// older build as the latest.
	a.Apply(numbered("6", "passed", 0, t0.Add(4*time.Hour)))
	if got := lastOf(t, a)[0]; got.Number != 0 {
		t.Errorf("after a newer record without a number: passed = %+v, want none", got)
	}
}

// TestLastBuildNumberOldBase: a base written before last_builds existed gets the passed build of
// what is deployed; the other states stay absent until their next record.
func TestLastBuildNumberOldBase(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAggregate()
	a.Apply(numbered("1", "passed", 10, t0))
	a.Apply(numbered("2", "failed", 11, t0.Add(time.Hour)))
	raw, err := a.marshalBase()
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	if _, ok := m["last_builds"]; !ok {
		t.Fatal("the base has no last_builds")
	}
	delete(m, "last_builds")
	old, _ := json.Marshal(m)
	b, err := UnmarshalAggregate(old)
	if err != nil {
		t.Fatal(err)
	}
	want := [snapshot.NumStates]snapshot.LastBuild{{Number: 10, FinishedAt: t0, Version: "v1"}}
	if diff := cmp.Diff(want, lastOf(t, b)); diff != "" {
		t.Errorf("derived from an old base (-want +got):\n%s", diff)
	}
	b.Apply(numbered("3", "failed", 14, t0.Add(2*time.Hour)))
	if got := lastOf(t, b)[1].Number; got != 14 {
		t.Errorf("failed after a new record = %d, want 14", got)
	}
}
