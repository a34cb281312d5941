package store

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// The conformance suite runs against every Log implementation, so the durable store behaves
// exactly like the in-memory one the collector's tests use.

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// rec returns a record with every field set, as the collector would store it.
func rec(build string, finished time.Time, env string) Record {
	return Record{
		Key:                 Key(build, finished, env),
		Organization:        "acme",
		Pipeline:            "acme/" + build[:1] + "-deploy",
		Component:           "svc-" + build[:1],
		Environment:         env,
		State:               "passed",
		BuildID:             build,
		BuildNumber:         len(build) * 7,
		WebURL:              "https://buildkite.com/acme/deploy/builds/" + build,
		Commit:              "c0ffee" + build,
		Version:             "v1." + build,
		CreatedAt:           finished.Add(-10 * time.Minute),
		StartedAt:           finished.Add(-5 * time.Minute),
		FinishedAt:          finished,
		LeadTimeSeconds:     3600.5,
		ApprovalWaitSeconds: -1,
	}
}

func replayAll(t *testing.T, l Log) []Record {
	t.Helper()
	var out []Record
	if err := l.Replay(func(r Record) error { out = append(out, r); return nil }); err != nil {
		t.Fatalf("Replay: %v", err)
	}
	return out
}

func mustAppend(t *testing.T, l Log, b Batch) []Record {
	t.Helper()
	added, err := l.Append(b)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return added
}

func mustLoad(t *testing.T, l Log) State {
	t.Helper()
	st, err := l.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	return st
}

// cmpOpts: nil and empty are the same (no records, no base).
var cmpOpts = cmp.Options{cmpopts.EquateEmpty()}

func newBoltT(t *testing.T) *Bolt {
	t.Helper()
	b, err := OpenBolt(t.TempDir(), BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestMemoryConformance(t *testing.T) {
	testConformance(t, func(*testing.T) Log { return NewMemory() })
}

func TestBoltConformance(t *testing.T) {
	testConformance(t, func(t *testing.T) Log { return newBoltT(t) })
}

func testConformance(t *testing.T, open func(*testing.T) Log) {
	a := rec("a1", t0, "production")
	b := rec("b1", t0.Add(time.Minute), "staging")
	c := rec("c1", t0.Add(2*time.Minute), "production")

	t.Run("AppendReturnsNewRecordsInBatchOrder", func(t *testing.T) {
		l := open(t)
		if got := mustAppend(t, l, Batch{Records: []Record{b, a}}); !cmp.Equal(got, []Record{b, a}) {
			t.Errorf("first Append returned %v", cmp.Diff([]Record{b, a}, got))
		}
		// a is stored already; a duplicate inside the batch counts once.
		got := mustAppend(t, l, Batch{Records: []Record{a, c, c}})
		if diff := cmp.Diff([]Record{c}, got); diff != "" {
			t.Errorf("second Append (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]Record{b, a, c}, replayAll(t, l)); diff != "" {
			t.Errorf("Replay (-want +got):\n%s", diff)
		}
	})

	t.Run("DedupIsByKeyOnly", func(t *testing.T) {
		l := open(t)
		mustAppend(t, l, Batch{Records: []Record{a}})
		changed := a
		changed.State = "failed" // same key, other content: the first one stays
		if got := mustAppend(t, l, Batch{Records: []Record{changed}}); len(got) != 0 {
			t.Errorf("Append of a stored key returned %v", got)
		}
		if got := replayAll(t, l); len(got) != 1 || got[0].State != "passed" {
			t.Errorf("Replay = %v, want the first record only", got)
		}
	})

	t.Run("AttemptKeysDedup", func(t *testing.T) {
		l := open(t)
		failed := func(attempt int, finished time.Time, env string) Record {
			r := rec("f1", finished, env)
			r.State = "failed"
			r.Key = AttemptKey("f1", attempt, env)
			return r
		}
		first := failed(0, t0, "production")
		retried := failed(1, t0.Add(time.Hour), "production")
		staging := failed(0, t0, "staging")
		passed := rec("f1", t0.Add(2*time.Hour), "production")
		if got := mustAppend(t, l, Batch{Records: []Record{first, retried, staging, passed}}); len(got) != 4 {
			t.Errorf("attempts 0 and 1, another environment and a pass: Append returned %d records, want 4", len(got))
		}
		// Read again after a retry overwrote finished_at: the attempt keys are the same.
		again := failed(0, t0.Add(2*time.Hour), "production")
		if got := mustAppend(t, l, Batch{Records: []Record{again, retried, staging}}); len(got) != 0 {
			t.Errorf("Append of stored attempts returned %v", got)
		}
		// An attempt key and a finish-time key are different keys, even for the same outcome.
		byTime := rec("f1", t0, "production")
		byTime.State = "failed"
		if got := mustAppend(t, l, Batch{Records: []Record{byTime}}); len(got) != 1 {
			t.Errorf("Append of a failure keyed by finish time returned %v, want it new", got)
		}
		if diff := cmp.Diff([]Record{first, retried, staging, passed, byTime}, replayAll(t, l)); diff != "" {
			t.Errorf("Replay (-want +got):\n%s", diff)
		}
	})

	t.Run("EmptyBatch", func(t *testing.T) {
		l := open(t)
		if got := mustAppend(t, l, Batch{}); len(got) != 0 {
			t.Errorf("Append(empty) = %v", got)
		}
		if diff := cmp.Diff(State{Watermarks: map[string]Watermark{}, CommitsFirstSeen: map[string]time.Time{}}, mustLoad(t, l), cmpOpts); diff != "" {
			t.Errorf("Load of an empty log (-want +got):\n%s", diff)
		}
	})

	t.Run("WatermarksAreReplacedPerOrganization", func(t *testing.T) {
		l := open(t)
		mustAppend(t, l, Batch{Watermarks: map[string]Watermark{"acme": {FinishedFrom: t0}, "globex": {FinishedFrom: t0, BackfillDone: true}}})
		mustAppend(t, l, Batch{Records: []Record{a}, Watermarks: map[string]Watermark{"acme": {FinishedFrom: t0.Add(time.Hour), BackfillDone: true}}})
		want := map[string]Watermark{
			"acme":   {FinishedFrom: t0.Add(time.Hour), BackfillDone: true},
			"globex": {FinishedFrom: t0, BackfillDone: true},
		}
		if diff := cmp.Diff(want, mustLoad(t, l).Watermarks); diff != "" {
			t.Errorf("watermarks (-want +got):\n%s", diff)
		}
	})

	t.Run("CommitsKeepTheEarliestTime", func(t *testing.T) {
		l := open(t)
		k1, k2 := CommitKey("svc-a", "abc"), CommitKey("svc-b", "abc")
		mustAppend(t, l, Batch{CommitsFirstSeen: map[string]time.Time{k1: t0.Add(time.Hour), k2: t0}})
		mustAppend(t, l, Batch{CommitsFirstSeen: map[string]time.Time{k1: t0, k2: t0.Add(time.Hour)}})
		want := map[string]time.Time{k1: t0, k2: t0}
		if diff := cmp.Diff(want, mustLoad(t, l).CommitsFirstSeen); diff != "" {
			t.Errorf("commits (-want +got):\n%s", diff)
		}
	})

	t.Run("LoadReturnsCopies", func(t *testing.T) {
		l := open(t)
		mustAppend(t, l, Batch{Records: []Record{rec("z9", t0.Add(-2*time.Hour), "production")},
			Watermarks: map[string]Watermark{"acme": {FinishedFrom: t0}}, CommitsFirstSeen: map[string]time.Time{"k": t0}})
		if err := l.Compact(t0.Add(-time.Hour), func([]byte, []Record) ([]byte, error) { return []byte("base"), nil }); err != nil {
			t.Fatal(err)
		}
		st := mustLoad(t, l)
		st.Watermarks["acme"] = Watermark{}
		st.CommitsFirstSeen["k"] = time.Time{}
		st.Base = append(st.Base[:0], "XXXX"...)
		again := mustLoad(t, l)
		if again.Watermarks["acme"].FinishedFrom != t0 || !again.CommitsFirstSeen["k"].Equal(t0) {
			t.Errorf("changing a loaded State changed the store: %+v", again)
		}
	})

	t.Run("ReplayStopsAtTheCallbackError", func(t *testing.T) {
		l := open(t)
		mustAppend(t, l, Batch{Records: []Record{a, b, c}})
		stop := errors.New("stop")
		var seen int
		err := l.Replay(func(Record) error {
			seen++
			if seen == 2 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || seen != 2 {
			t.Errorf("Replay returned %v after %d records, want the callback's error after 2", err, seen)
		}
	})

	t.Run("Compact", func(t *testing.T) {
		l := open(t)
		old1, old2 := rec("a2", t0.Add(-48*time.Hour), "production"), rec("b2", t0.Add(-47*time.Hour), "production")
		mustAppend(t, l, Batch{Records: []Record{old1, a, old2}})
		var calls [][]Record
		fold := func(base []byte, old []Record) ([]byte, error) {
			calls = append(calls, old)
			return fmt.Appendf(base, "+%d", len(old)), nil
		}
		if err := l.Compact(t0.Add(-time.Hour), fold); err != nil {
			t.Fatalf("Compact: %v", err)
		}
		if diff := cmp.Diff([][]Record{{old1, old2}}, calls); diff != "" {
			t.Errorf("fold got (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff([]Record{a}, replayAll(t, l)); diff != "" {
			t.Errorf("Replay after Compact (-want +got):\n%s", diff)
		}
		if got := string(mustLoad(t, l).Base); got != "+2" {
			t.Errorf("Base = %q, want +2", got)
		}
		// A compacted record read again (poll overlap, backfill) is still known.
		if got := mustAppend(t, l, Batch{Records: []Record{old1}}); len(got) != 0 {
			t.Errorf("re-appending a compacted record returned %v", got)
		}
		// Nothing older than the cutoff: fold is not called, the base stays.
		calls = nil
		if err := l.Compact(t0.Add(-time.Hour), fold); err != nil || calls != nil {
			t.Errorf("second Compact: err %v, fold calls %v", err, calls)
		}
		// The next fold gets the current base.
		if err := l.Compact(t0.Add(time.Hour), fold); err != nil {
			t.Fatal(err)
		}
		if got := string(mustLoad(t, l).Base); got != "+2+1" {
			t.Errorf("Base = %q, want +2+1", got)
		}
		if got := replayAll(t, l); len(got) != 0 {
			t.Errorf("Replay after compacting everything = %v", got)
		}
	})

	t.Run("CompactPrunes", func(t *testing.T) {
		l := open(t)
		cutoff := t0.Add(-time.Hour)
		old, recent := rec("a3", t0.Add(-48*time.Hour), "production"), rec("b3", t0.Add(-30*time.Minute), "production")
		oldFail := rec("c3", t0.Add(-47*time.Hour), "production")
		oldFail.State, oldFail.Key = "failed", AttemptKey("c3", 0, "production")
		kOld, kNew := CommitKey("svc", "old"), CommitKey("svc", "new")
		mustAppend(t, l, Batch{
			Records:          []Record{old, oldFail, recent},
			Watermarks:       map[string]Watermark{"acme": {FinishedFrom: t0, BackfillDone: true}},
			CommitsFirstSeen: map[string]time.Time{kOld: t0.Add(-50 * time.Hour), kNew: t0.Add(-40 * time.Minute)},
		})
		fold := func(base []byte, old []Record) ([]byte, error) { return fmt.Appendf(base, "+%d", len(old)), nil }
		if err := l.Compact(cutoff, fold); err != nil {
			t.Fatal(err)
		}
		st := mustLoad(t, l)
		want := State{
			Watermarks:       map[string]Watermark{"acme": {FinishedFrom: t0, BackfillDone: true}},
			CommitsFirstSeen: map[string]time.Time{kNew: t0.Add(-40 * time.Minute)}, // kOld was first seen before the cutoff
			Base:             []byte("+2"),
			Compacted:        2,
			PrunedBefore:     cutoff, // the watermark is more than MaxOverlap after it
		}
		if diff := cmp.Diff(want, st, cmpOpts); diff != "" {
			t.Errorf("state after Compact (-want +got):\n%s", diff)
		}
		// The recent key stays.
		if got := mustAppend(t, l, Batch{Records: []Record{recent}}); len(got) != 0 {
			t.Errorf("re-appending a stored record returned %v", got)
		}
		// The old keys are gone: a record with one of them, finished after the horizon, is new.
		moved := old
		moved.FinishedAt = t0
		// The old outcomes themselves, read again (a retried build's recovered failure, say),
		// are ignored, not counted again: they finished before PrunedBefore.
		if got := mustAppend(t, l, Batch{Records: []Record{old, oldFail, moved}}); !cmp.Equal(got, []Record{moved}) {
			t.Errorf("Append of pruned outcomes and a record with a pruned key returned %v, want only the latter", keysOf(got))
		}
		if diff := cmp.Diff([]Record{recent, moved}, replayAll(t, l)); diff != "" {
			t.Errorf("Replay (-want +got):\n%s", diff)
		}
		// Nothing counted changed: the base holds the two compacted outcomes, no more.
		if st := mustLoad(t, l); string(st.Base) != "+2" || st.Compacted != 2 {
			t.Errorf("after appending pruned outcomes: base %q, compacted %d", st.Base, st.Compacted)
		}
		// A later Compact with an earlier cutoff does not move PrunedBefore back.
		if err := l.Compact(cutoff.Add(-24*time.Hour), fold); err != nil {
			t.Fatal(err)
		}
		if got := mustLoad(t, l).PrunedBefore; !got.Equal(cutoff) {
			t.Errorf("PrunedBefore = %v after an earlier cutoff, want %v", got, cutoff)
		}
	})

	t.Run("CompactKeepsKeysAnOldWatermarkReReads", func(t *testing.T) {
		l := open(t)
		// acme was not polled for ten days (the exporter was down); globex has not finished
		// its backfill, whose listing does not start at its watermark.
		wm := t0.Add(-10 * 24 * time.Hour)
		wms := map[string]Watermark{
			"acme":   {FinishedFrom: wm, BackfillDone: true},
			"globex": {FinishedFrom: t0.Add(-100 * 24 * time.Hour)},
		}
		inOverlap := rec("a4", wm.Add(-2*time.Minute), "production")         // the next poll re-reads it
		beforeIt := rec("b4", wm.Add(-MaxOverlap-time.Second), "production") // it does not
		mustAppend(t, l, Batch{Records: []Record{inOverlap, beforeIt}, Watermarks: wms})
		if err := l.Compact(t0.Add(-time.Hour), func(base []byte, _ []Record) ([]byte, error) { return append(base, 'x'), nil }); err != nil {
			t.Fatal(err)
		}
		st := mustLoad(t, l)
		if want := wm.Add(-MaxOverlap); !st.PrunedBefore.Equal(want) || st.Compacted != 2 {
			t.Errorf("PrunedBefore %v, Compacted %d; want %v (MaxOverlap before acme's watermark) and 2", st.PrunedBefore, st.Compacted, want)
		}
		// The poll resumes at acme's watermark less its overlap: what it re-reads is known,
		// and what finished while nobody polled is new, although older than the cutoff.
		during := rec("c4", wm.Add(time.Hour), "production")
		if got := mustAppend(t, l, Batch{Records: []Record{inOverlap, during}}); !cmp.Equal(got, []Record{during}) {
			t.Errorf("first poll after the outage returned %v, want only %s", keysOf(got), during.Key)
		}
		moved := beforeIt
		moved.FinishedAt = t0
		if got := mustAppend(t, l, Batch{Records: []Record{beforeIt, moved}}); !cmp.Equal(got, []Record{moved}) {
			t.Errorf("Append returned %v, want only the record with the pruned key that finished after the horizon", keysOf(got))
		}
	})

	t.Run("CompactFoldErrorChangesNothing", func(t *testing.T) {
		l := open(t)
		mustAppend(t, l, Batch{Records: []Record{a, b}})
		boom := errors.New("boom")
		err := l.Compact(t0.Add(time.Hour), func([]byte, []Record) ([]byte, error) { return nil, boom })
		if !errors.Is(err, boom) {
			t.Errorf("Compact = %v, want the fold's error", err)
		}
		if diff := cmp.Diff([]Record{a, b}, replayAll(t, l)); diff != "" {
			t.Errorf("records after a failed Compact (-want +got):\n%s", diff)
		}
		if st := mustLoad(t, l); st.Base != nil {
			t.Errorf("Base after a failed Compact = %q", st.Base)
		}
	})

	t.Run("Closed", func(t *testing.T) {
		l := open(t)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if err := l.Close(); err != nil {
			t.Errorf("second Close = %v", err)
		}
		if _, err := l.Append(Batch{Records: []Record{a}}); !errors.Is(err, ErrClosed) {
			t.Errorf("Append after Close = %v", err)
		}
		if _, err := l.Load(); !errors.Is(err, ErrClosed) {
			t.Errorf("Load after Close = %v", err)
		}
		if err := l.Replay(func(Record) error { return nil }); !errors.Is(err, ErrClosed) {
			t.Errorf("Replay after Close = %v", err)
		}
		if err := l.Compact(t0, func(b []byte, _ []Record) ([]byte, error) { return b, nil }); !errors.Is(err, ErrClosed) {
			t.Errorf("Compact after Close = %v", err)
		}
	})
}

// TestBoltMatchesMemory drives both implementations with the same random operations (batches
// overlapping earlier ones, compactions, and for Bolt reopening the file) and requires every
// answer to be the same.
func TestBoltMatchesMemory(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	open := func() *Bolt {
		b, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	mem, bl := NewMemory(), open()
	defer func() { _ = bl.Close() }()
	fold := func(base []byte, old []Record) ([]byte, error) {
		for _, r := range old {
			base = append(base, r.BuildID...)
		}
		return base, nil
	}
	var all []Record
	envs := []string{"production", "staging"}
	for step := range 300 {
		switch op := rng.IntN(10); {
		case op < 7: // append: some new records, some already stored
			var b Batch
			for range rng.IntN(6) {
				if len(all) > 0 && rng.IntN(3) == 0 {
					b.Records = append(b.Records, all[rng.IntN(len(all))])
					continue
				}
				r := rec(fmt.Sprintf("%c%d", 'a'+rng.IntN(3), len(all)), t0.Add(time.Duration(rng.IntN(1000))*time.Hour), envs[rng.IntN(2)])
				if rng.IntN(3) == 0 { // a failure, keyed by attempt as the collector does
					r.State = "failed"
					r.Key = AttemptKey(r.BuildID, rng.IntN(3), r.Environment)
				}
				all = append(all, r)
				b.Records = append(b.Records, r)
			}
			b.Watermarks = map[string]Watermark{"acme": {FinishedFrom: t0.Add(time.Duration(step) * time.Minute), BackfillDone: step%2 == 0}}
			b.CommitsFirstSeen = map[string]time.Time{CommitKey("svc", fmt.Sprint(rng.IntN(5))): t0.Add(time.Duration(rng.IntN(100)) * time.Hour)}
			wm, err1 := mem.Append(b)
			gb, err2 := bl.Append(b)
			if err1 != nil || err2 != nil {
				t.Fatalf("step %d: Append errors %v / %v", step, err1, err2)
			}
			if diff := cmp.Diff(wm, gb, cmpOpts); diff != "" {
				t.Fatalf("step %d: Append (-memory +bolt):\n%s", step, diff)
			}
		case op < 8:
			cutoff := t0.Add(time.Duration(rng.IntN(1000)) * time.Hour)
			if err1, err2 := mem.Compact(cutoff, fold), bl.Compact(cutoff, fold); err1 != nil || err2 != nil {
				t.Fatalf("step %d: Compact errors %v / %v", step, err1, err2)
			}
		default:
			if err := bl.Close(); err != nil {
				t.Fatal(err)
			}
			bl = open()
		}
		if diff := cmp.Diff(replayAll(t, mem), replayAll(t, bl), cmpOpts); diff != "" {
			t.Fatalf("step %d: Replay (-memory +bolt):\n%s", step, diff)
		}
		if diff := cmp.Diff(mustLoad(t, mem), mustLoad(t, bl), cmpOpts); diff != "" {
			t.Fatalf("step %d: Load (-memory +bolt):\n%s", step, diff)
		}
	}
}
