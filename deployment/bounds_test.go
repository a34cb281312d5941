package deployment

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// baseWithEverything is a base with observations in every histogram kind.
func baseWithEverything(t *testing.T) []byte {
	t.Helper()
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []store.Record
	for i, st := range []string{"failed", "passed", "failed", "passed"} {
		r := rec(fmt.Sprint(i), st, t0.Add(time.Duration(i)*time.Hour), 10*time.Minute)
		r.LeadTimeSeconds, r.ApprovalWaitSeconds = 7200, 600
		recs = append(recs, r)
	}
	base, err := Fold(nil, recs)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := UnmarshalAggregate(base)
	for _, kind := range []string{histDuration, histLeadTime, histRecovery, histApprovalWait} {
		if len(a.histograms(kind)) == 0 {
			t.Fatalf("the test base has no %s histogram", kind)
		}
	}
	return base
}

// setBounds replaces a package's bounds for the test.
func setBounds(t *testing.T, bounds *[]float64, v []float64) {
	old := *bounds
	*bounds = v
	t.Cleanup(func() { *bounds = old })
}

// TestBaseBoundsChanged: a base aggregated with other buckets than this binary's is refused
// with an error naming the histogram and both bound lists, for every kind.
func TestBaseBoundsChanged(t *testing.T) {
	for _, tc := range []struct {
		metric string
		bounds *[]float64
	}{
		{"buildkite_deployment_duration_seconds", &config.DurationBuckets},
		{"buildkite_deployment_lead_time_seconds", &leadTimeBuckets},
		{"buildkite_deployment_recovery_seconds", &recoveryBuckets},
		{"buildkite_deployment_approval_wait_seconds", &approvalWaitBuckets},
	} {
		t.Run(tc.metric, func(t *testing.T) {
			base := baseWithEverything(t)
			old := slices.Clone(*tc.bounds)
			// Same number of buckets, other bounds: only the recorded bounds can tell.
			changed := slices.Clone(old)
			changed[0]++
			setBounds(t, tc.bounds, changed)
			_, err := UnmarshalAggregate(base)
			var bc *BucketsChangedError
			if !errors.As(err, &bc) {
				t.Fatalf("UnmarshalAggregate with changed bounds = %v, want a *BucketsChangedError", err)
			}
			if bc.Histogram != tc.metric || !slices.Equal(bc.Stored, old) || !slices.Equal(bc.Current, changed) {
				t.Errorf("error %+v, want %s with %v → %v", bc, tc.metric, old, changed)
			}
			for _, want := range []string{"the base holds counts aggregated with other buckets", tc.metric, fmt.Sprint(old), fmt.Sprint(changed), "move the deployment log aside"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("message %q does not contain %q", err, want)
				}
			}
			// Compact's fold fails the same way rather than mixing the two.
			if _, err := Fold(base, nil); !errors.As(err, &bc) {
				t.Errorf("Fold with changed bounds = %v", err)
			}
		})
	}
}

// TestBaseBoundsSame: with the same bounds a base reads back and adds up as before.
func TestBaseBoundsSame(t *testing.T) {
	base := baseWithEverything(t)
	a, err := UnmarshalAggregate(base)
	if err != nil {
		t.Fatal(err)
	}
	again, err := a.marshalBase()
	if err != nil {
		t.Fatal(err)
	}
	if string(again) != string(base) {
		t.Errorf("base changed by a round trip:\n%s\n%s", base, again)
	}
	var m map[string]any
	_ = json.Unmarshal(base, &m)
	want := map[string]any{}
	for k, v := range currentBounds() {
		want[k] = toAny(v)
	}
	if diff := cmp.Diff(want, m["bounds"]); diff != "" || m["version"] != float64(aggregateVersion) {
		t.Errorf("base version %v, bounds (-want +got):\n%s", m["version"], diff)
	}
}

func toAny(fs []float64) []any {
	out := make([]any, len(fs))
	for i, f := range fs {
		out[i] = f
	}
	return out
}

// TestBaseBoundsWithoutObservations: a kind with no observation in the base takes the new
// bounds; nothing is lost.
func TestBaseBoundsWithoutObservations(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base, err := Fold(nil, []store.Record{rec("1", "passed", t0, time.Minute)}) // no approval wait, lead time, recovery
	if err != nil {
		t.Fatal(err)
	}
	setBounds(t, &approvalWaitBuckets, []float64{60, 600})
	a, err := UnmarshalAggregate(base)
	if err != nil {
		t.Fatalf("changed bounds of a kind without observations: %v", err)
	}
	if !slices.Equal(a.Bounds[histApprovalWait], []float64{60, 600}) {
		t.Errorf("bounds after reading: %v", a.Bounds)
	}
}

// olderBase is base as version (1 or 2) wrote it: without the version-3 fields (exemplars,
// native buckets, created timestamps, drop counts) and, for version 1, without bounds.
func olderBase(t *testing.T, base []byte, version int) []byte {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(base, &m); err != nil {
		t.Fatal(err)
	}
	delete(m, "pipeline_created")
	delete(m, "exemplars_dropped")
	for _, kind := range []string{"duration", "lead_time", "recovery", "approval_wait"} {
		hs, _ := m[kind].(map[string]any)
		for _, h := range hs {
			for _, f := range []string{"exemplars", "native", "created", "legacy"} {
				delete(h.(map[string]any), f)
			}
		}
	}
	if version == 1 {
		delete(m, "bounds")
	}
	m["version"] = version
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestBaseVersion1: a version-1 base, which did not record bounds, is read with the current
// ones and written back as the current version with them, as a version-2 base of the same
// counts is; one whose counts do not fit the current bounds is refused.
func TestBaseVersion1(t *testing.T) {
	base := baseWithEverything(t)
	v1, v2 := olderBase(t, base, 1), olderBase(t, base, 2)
	a, err := UnmarshalAggregate(v1)
	if err != nil {
		t.Fatalf("version-1 base: %v", err)
	}
	if diff := cmp.Diff(currentBounds(), a.Bounds); diff != "" {
		t.Errorf("bounds of a version-1 base (-want +got):\n%s", diff)
	}
	fromV2, err := UnmarshalAggregate(v2)
	if err != nil {
		t.Fatalf("version-2 base: %v", err)
	}
	again1, _ := a.marshalBase()
	again2, _ := fromV2.marshalBase()
	if string(again1) != string(again2) {
		t.Errorf("version 1 and 2 of the same base written back differ:\n%s\n%s", again1, again2)
	}
	if diff := cmp.Diff(fromV2, a, cmpopts.IgnoreUnexported(Aggregate{}, histogram{})); diff != "" {
		t.Errorf("version 1 and 2 of the same base differ (-2 +1):\n%s", diff)
	}

	// One more duration bucket than the base's counts: refused, the old bounds unknown.
	setBounds(t, &config.DurationBuckets, append(slices.Clone(config.DurationBuckets), 7200))
	_, err = UnmarshalAggregate(v1)
	var bc *BucketsChangedError
	if !errors.As(err, &bc) || bc.Stored != nil || bc.StoredBuckets != len(config.DurationBuckets) || bc.Histogram != "buildkite_deployment_duration_seconds" {
		t.Fatalf("version-1 base with fewer duration buckets = %v (%+v)", err, bc)
	}
	if !strings.Contains(err.Error(), "version-1 summary, with 7 buckets") {
		t.Errorf("message %q does not say the old bounds are unknown", err)
	}
}

// TestBaseDamagedBuckets: a version-2 base whose counts do not fit its own bounds is damaged.
func TestBaseDamagedBuckets(t *testing.T) {
	a := NewAggregate()
	a.Apply(rec("1", "passed", time.Unix(1e9, 0), time.Minute))
	for _, h := range a.Duration {
		h.Counts = h.Counts[:2]
	}
	base, _ := a.marshalBase()
	if _, err := UnmarshalAggregate(base); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("UnmarshalAggregate of a base with too few buckets = %v", err)
	}
}
