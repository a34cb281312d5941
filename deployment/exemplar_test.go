package deployment

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	promhist "github.com/prometheus/prometheus/model/histogram"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// build is a passed record of build number n of pipeline "o/p" with a commit.
func build(n int, finished time.Time, dur time.Duration) store.Record {
	r := rec(sha(n), "passed", finished, dur)
	r.BuildNumber, r.Commit = n, sha(1000+n)
	return r
}

func TestExemplarLatestPerBucket(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAggregate()
	a.Apply(build(1, t0, 2*time.Minute))                 // 120 s: bucket ≤ 300
	a.Apply(build(2, t0.Add(time.Hour), 3*time.Minute))  // 180 s: same bucket, later: replaces
	a.Apply(build(3, t0.Add(-time.Hour), 4*time.Minute)) // a late arrival, earlier finish: kept out
	a.Apply(build(4, t0.Add(2*time.Hour), 2*time.Hour))  // 7200 s: above every bound (+Inf)
	h := a.Duration[joinKey("c", "production", "passed")]
	want := make([]*snapshot.Exemplar, len(config.DurationBuckets)+1)
	want[1] = &snapshot.Exemplar{Value: 180, Time: t0.Add(time.Hour).UnixNano(), Build: "o/p/builds/2", Commit: sha(1002)[:12]}
	want[len(want)-1] = &snapshot.Exemplar{Value: 7200, Time: t0.Add(2 * time.Hour).UnixNano(), Build: "o/p/builds/4", Commit: sha(1004)[:12]}
	if config.DurationBuckets[1] != 300 {
		t.Fatalf("the test assumes a 300 s second bucket: %v", config.DurationBuckets)
	}
	if diff := cmp.Diff(want, h.Exemplars); diff != "" {
		t.Errorf("exemplars (-want +got):\n%s", diff)
	}
	if h.Created != t0.Add(-time.Hour).UnixNano() {
		t.Errorf("created = %v, want the earliest finish %v", h.Created, t0.Add(-time.Hour))
	}
	if got := a.PipelineCreated[joinKey("c", "production", "o/p")]; !got.Equal(t0.Add(-time.Hour)) {
		t.Errorf("pipeline created = %v", got)
	}
	// A record without build number has no exemplar and does not remove one.
	r := rec("x", "passed", t0.Add(3*time.Hour), 2*time.Minute)
	a.Apply(r)
	if h.Exemplars[1].Build != "o/p/builds/2" {
		t.Errorf("a record without build number replaced the exemplar: %+v", h.Exemplars[1])
	}
}

// TestExemplarLabelLimit: a slug that leaves no room for the commit label loses it, one too
// long for the build label alone loses the exemplar (a 120-character slug, Buildkite's
// longest), and both are counted; runes are counted, not bytes.
func TestExemplarLabelLimit(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name, pipeline string
		wantBuild      bool
		wantCommit     bool
		dropped        string
	}{
		{"short", "acme/deploy", true, true, ""},
		// build = 5 runes + len(value); commit = 6 + 12.
		{"commit does not fit", "acme/" + strings.Repeat("s", 100), true, false, snapshot.ExemplarDroppedCommit},
		{"120-character slug", "acme/" + strings.Repeat("s", 120), false, false, snapshot.ExemplarDroppedAll},
		// 100 two-byte runes: 200 bytes, but 5 + 5+100+10 = 120 runes fit, the commit does not.
		{"runes not bytes", "acme/" + strings.Repeat("é", 100), true, false, snapshot.ExemplarDroppedCommit},
		// Exactly 128: 5 + len("acme/")+n+len("/builds/12") + 6+12 = 128 → n = 90.
		{"exactly 128 runes", "acme/" + strings.Repeat("s", 90), true, true, ""},
		{"129 runes", "acme/" + strings.Repeat("s", 91), true, false, snapshot.ExemplarDroppedCommit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAggregate()
			r := build(12, t0, 2*time.Minute)
			r.Pipeline = tc.pipeline
			r.ApprovalWaitSeconds = 30 // two observations: two drops counted
			a.Apply(r)
			h := a.Duration[joinKey("c", "production", "passed")]
			e := h.Exemplars
			var got *snapshot.Exemplar
			if e != nil {
				got = e[1]
			}
			if (got != nil) != tc.wantBuild {
				t.Fatalf("exemplar %+v, want one: %v", got, tc.wantBuild)
			}
			if got != nil {
				if got.Build != tc.pipeline+"/builds/12" || (got.Commit != "") != tc.wantCommit {
					t.Errorf("exemplar %+v", got)
				}
				runes := len([]rune(got.Build)) + len("build")
				if got.Commit != "" {
					runes += len("commit") + len(got.Commit)
				}
				if runes > 128 {
					t.Errorf("exemplar labels have %d runes", runes)
				}
			}
			want := map[string]uint64{}
			if tc.dropped != "" {
				want[tc.dropped] = 2
			}
			if diff := cmp.Diff(want, a.ExemplarsDropped); diff != "" {
				t.Errorf("dropped (-want +got):\n%s", diff)
			}
		})
	}
}

func TestShortCommit(t *testing.T) {
	for in, want := range map[string]string{
		sha(255):           "000000000000",
		"ABCDEF0123456789": "abcdef012345",
		"abcdef0":          "abcdef0",
		"HEAD":             "",
		"main-branch-name": "",
		"":                 "",
	} {
		if got := shortCommit(in); got != want {
			t.Errorf("shortCommit(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestNativeExact applies random records and checks every native histogram against the
// records: each observation falls in the bucket Prometheus's own model says it does (its
// lower bound < v ≤ its upper bound), no bucket holds more or less than the records put there,
// and count and sum equal the classic form's. The same after compaction at a random cut.
func TestNativeExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(14, 14))
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	var recs []store.Record
	values := map[string][]float64{} // duration histogram key → observations
	for i := range 3000 {
		comp := []string{"a", "b", "c"}[rng.IntN(3)]
		// Durations from 0 to 10 days, log-uniform, plus exact powers of two and zeros.
		var d time.Duration
		switch rng.IntN(10) {
		case 0:
			d = 0
		case 1:
			d = time.Duration(1<<rng.IntN(20)) * time.Second
		default:
			d = time.Duration(math.Exp(rng.Float64()*math.Log(864000)) * float64(time.Second))
		}
		st := []string{"passed", "failed"}[rng.IntN(2)]
		r := rec(sha(i), st, t0.Add(time.Duration(rng.IntN(1e6))*time.Second), d)
		r.Component, r.BuildNumber, r.Commit = comp, i+1, sha(i)
		recs = append(recs, r)
		k := joinKey(comp, "production", st)
		values[k] = append(values[k], r.FinishedAt.Sub(r.StartedAt).Seconds())
	}
	check := func(t *testing.T, a *Aggregate) {
		t.Helper()
		for k, vs := range values {
			h := a.Duration[k]
			if h == nil || h.Native == nil {
				t.Fatalf("%q: no native histogram", k)
			}
			ph := toModel(h)
			if err := ph.Validate(); err != nil {
				t.Fatalf("%q: Prometheus refuses the native histogram: %v", k, err)
			}
			if ph.Count != h.Count || ph.Count != uint64(len(vs)) || ph.Sum != h.Sum {
				t.Errorf("%q: native count %d sum %v, classic %d %v, records %d", k, ph.Count, ph.Sum, h.Count, h.Sum, len(vs))
			}
			var zero uint64
			perBucket := map[int32]uint64{} // by upper bound's index
			for _, v := range vs {
				if v <= snapshot.NativeZeroThreshold {
					zero++
					continue
				}
				// The index from the definition (2^((i-1)/16), 2^(i/16)], not from Frexp.
				idx := int32(math.Ceil(math.Log2(v) * (1 << snapshot.NativeSchema)))
				if !(bound(idx-1) < v && v <= bound(idx)) {
					t.Fatalf("the test's index %d of %v is wrong", idx, v)
				}
				perBucket[idx]++
			}
			if zero != h.Native.ZeroCount {
				t.Errorf("%q: zero bucket %d, want %d", k, h.Native.ZeroCount, zero)
			}
			got := map[int32]uint64{}
			for it := ph.PositiveBucketIterator(); it.Next(); {
				b := it.At()
				// Prometheus's bounds for the bucket, back to an index; they must hold
				// every observation the records put there.
				idx := int32(math.Round(math.Log2(b.Upper) * (1 << snapshot.NativeSchema)))
				if math.Abs(b.Upper-bound(idx)) > 1e-9*b.Upper || math.Abs(b.Lower-bound(idx-1)) > 1e-9*b.Upper {
					t.Fatalf("Prometheus's bucket (%v, %v] is not bucket %d", b.Lower, b.Upper, idx)
				}
				got[idx] = b.Count
			}
			if diff := cmp.Diff(perBucket, got); diff != "" {
				t.Errorf("%q: native buckets (-records +aggregate):\n%s", k, diff)
			}
		}
	}
	a := NewAggregate()
	for _, r := range recs {
		a.Apply(r)
	}
	check(t, a)
	whole, _ := a.marshalBase()
	for range 5 {
		cut := rng.IntN(len(recs))
		base, err := Fold(nil, recs[:cut])
		if err != nil {
			t.Fatal(err)
		}
		b, err := UnmarshalAggregate(base)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range recs[cut:] {
			b.Apply(r)
		}
		check(t, b)
		again, _ := b.marshalBase()
		var w, g any
		_ = json.Unmarshal(whole, &w)
		_ = json.Unmarshal(again, &g)
		if diff := cmp.Diff(w, g); diff != "" {
			t.Errorf("cut %d: compaction changed the aggregate (exemplars, native, created) (-whole +compacted):\n%s", cut, diff)
		}
	}
}

// bound is the upper bound of bucket idx at the native schema, as Prometheus defines it.
func bound(idx int32) float64 { return math.Exp2(float64(idx) / (1 << snapshot.NativeSchema)) }

// toModel is h's native form as a Prometheus histogram.Histogram, built from the same spans
// and deltas the exposition writes.
func toModel(h *histogram) *promhist.Histogram {
	ph := &promhist.Histogram{Schema: snapshot.NativeSchema, ZeroThreshold: snapshot.NativeZeroThreshold,
		ZeroCount: h.Native.ZeroCount, Count: h.Count, Sum: h.Sum}
	var prev int32
	var prevCount int64
	for i, b := range h.Native.Buckets {
		switch {
		case i == 0:
			ph.PositiveSpans = append(ph.PositiveSpans, promhist.Span{Offset: b.Index})
		case b.Index != prev+1:
			ph.PositiveSpans = append(ph.PositiveSpans, promhist.Span{Offset: b.Index - prev - 1})
		}
		ph.PositiveSpans[len(ph.PositiveSpans)-1].Length++
		ph.PositiveBuckets = append(ph.PositiveBuckets, int64(b.Count)-prevCount)
		prev, prevCount = b.Index, int64(b.Count)
	}
	return ph
}

// TestSnapshotSharesNothingMutable: observations after a snapshot change neither its counts,
// exemplars nor native buckets, which it shares with the aggregate until then.
func TestSnapshotSharesNothingMutable(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAggregate()
	a.Apply(build(1, t0, 2*time.Minute))
	h := a.Duration[joinKey("c", "production", "passed")]
	s := h.snapshot(config.DurationBuckets)
	ex, zero, buckets := *s.Exemplars[1], s.Native.ZeroCount, append([]snapshot.NativeBucket(nil), s.Native.Buckets...)
	counts := append([]uint64(nil), s.Counts...)
	a.Apply(build(2, t0.Add(time.Hour), 3*time.Minute))
	a.Apply(build(3, t0.Add(2*time.Hour), 0))
	if *s.Exemplars[1] != ex || s.Native.ZeroCount != zero || !cmp.Equal(buckets, s.Native.Buckets) {
		t.Errorf("the snapshot changed: %+v %+v", s.Exemplars[1], s.Native)
	}
	if !cmp.Equal(counts, s.Counts) {
		t.Errorf("the snapshot's counts changed from %v to %v", counts, s.Counts)
	}
	if h.Count != 3 || slices.Equal(h.Counts, s.Counts) {
		t.Errorf("the aggregate's counts did not move on: %v (count %d), snapshot %v", h.Counts, h.Count, s.Counts)
	}
	if h.Exemplars[1].Build != "o/p/builds/2" || h.Native.ZeroCount != 1 || len(h.Native.Buckets) != 2 {
		t.Errorf("the aggregate did not move on: %+v %+v", h.Exemplars[1], h.Native)
	}
}

// TestBaseVersion2Migrates: a version-2 base's histograms become Legacy (no native form, no
// created time, in the snapshot too), its pipelines' created times unknown for good; new
// observations bring exemplars back and are still counted.
func TestBaseVersion2Migrates(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	base, err := Fold(nil, []store.Record{build(1, t0, 2*time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	a, err := UnmarshalAggregate(olderBase(t, base, 2))
	if err != nil {
		t.Fatal(err)
	}
	k := joinKey("c", "production", "passed")
	h := a.Duration[k]
	if !h.Legacy || h.Native != nil || h.Created != 0 || h.Exemplars != nil {
		t.Fatalf("migrated histogram %+v", h)
	}
	a.Apply(build(2, t0.Add(time.Hour), 20*time.Minute))
	s := h.snapshot(config.DurationBuckets)
	if s.Native != nil || s.Created != 0 || s.Count != 2 {
		t.Errorf("snapshot of a legacy histogram: native %+v created %v count %d", s.Native, s.Created, s.Count)
	}
	if s.Exemplars == nil || s.Exemplars[4] == nil || s.Exemplars[4].Build != "o/p/builds/2" {
		t.Errorf("no exemplar from the new observation: %+v", s.Exemplars)
	}
	if ct, ok := a.PipelineCreated[joinKey("c", "production", "o/p")]; !ok || !ct.IsZero() {
		t.Errorf("pipeline created after migration = %v, %v; want known to be unknown", ct, ok)
	}
	// Written back and read again: still the same, version 3.
	again, _ := a.marshalBase()
	b, err := UnmarshalAggregate(again)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, b, cmpopts.IgnoreUnexported(Aggregate{}, histogram{})); diff != "" {
		t.Errorf("round trip (-before +after):\n%s", diff)
	}
}

// TestNativeOverflowDropsNative: a native bucket count that would pass 32 bits cannot stay
// exact: the histogram keeps counting in its classic buckets, without a native form.
func TestNativeOverflowDropsNative(t *testing.T) {
	var h histogram
	bounds := []float64{10, 100}
	h.observe(bounds, 50)
	h.Native.Buckets[0].Count = math.MaxUint32
	h.observe(bounds, 50)
	if !h.Legacy || h.Native != nil || h.Count != 2 || h.Counts[1] != 2 {
		t.Errorf("after the overflow: legacy %v native %+v count %d counts %v", h.Legacy, h.Native, h.Count, h.Counts)
	}
	if s := h.snapshot(bounds); s.Native != nil {
		t.Errorf("the snapshot has a native form: %+v", s.Native)
	}
}

// TestSnapshotReusedUntilObserved: a histogram with no observation since the last snapshot
// gives the next snapshot the same value; an observation makes a new one and leaves the old.
func TestSnapshotReusedUntilObserved(t *testing.T) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a := NewAggregate()
	a.Apply(build(1, t0, 2*time.Minute))
	h := a.Duration[joinKey("c", "production", "passed")]
	s1 := h.snapshot(config.DurationBuckets)
	if s2 := h.snapshot(config.DurationBuckets); s2 != s1 {
		t.Error("a second snapshot without an observation between made a new copy")
	}
	if other := h.snapshot(slices.Clone(config.DurationBuckets)); other == s1 || !slices.Equal(other.Bounds, s1.Bounds) {
		t.Error("a snapshot with other bounds reused the first")
	}
	a.Apply(build(2, t0.Add(time.Hour), 3*time.Minute))
	s3 := h.snapshot(config.DurationBuckets)
	if s3 == s1 || s1.Count != 1 || s3.Count != 2 {
		t.Errorf("after an observation: same value %v, counts %d then %d", s3 == s1, s1.Count, s3.Count)
	}
}
