package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	berrors "go.etcd.io/bbolt/errors"
)

// TestFailedAppendsCountOnce drives the store as the poller does: every cycle lists from the
// watermark less an overlap, so every batch repeats records an earlier one stored; a failed
// Append keeps the watermark, so the next batch repeats the failed one and adds what finished
// since. Appends fail on a full disk (the size cap) and with a commit that reached the disk
// but reported an error, in turn, and then succeed. Every record must be returned as new by
// exactly one call, and a restart must replay each once. (A failed Append used to make every
// key of its batch pending, including the overlap stored and counted before, which the retry
// then returned as new again: 21 counted for 11 deployments.)
func TestFailedAppendsCountOnce(t *testing.T) {
	dir := t.TempDir()
	b := openT(t, dir)
	defer func() { _ = b.Close() }()

	const overlap = 3 // records the next listing re-reads before the watermark
	var (
		all     []Record // every distinct record, in listing order
		wm      int      // records before all[wm] were acknowledged (the watermark)
		counted = map[string]int{}
	)
	ambiguous := errors.New("fsync: input/output error")
	cycle := func(newRecords int, fault string) {
		t.Helper()
		for range newRecords {
			i := len(all)
			r := rec(fmt.Sprintf("o%05d", i), t0.Add(time.Duration(i)*time.Second), "production")
			r.WebURL += string(make([]byte, 300)) // bigger records fill the capped file sooner
			all = append(all, r)
		}
		batch := Batch{
			Records:    slices.Clone(all[max(0, wm-overlap):]),
			Watermarks: map[string]Watermark{"acme": {FinishedFrom: all[len(all)-1].FinishedAt, BackfillDone: true}},
		}
		switch fault {
		case "full":
			b.db.MaxSize = 1 // any page beyond the file's high-water mark fails: a full disk
		case "ambiguous":
			b.commitHook = func() error { return ambiguous }
		}
		added, err := b.Append(batch)
		b.db.MaxSize, b.commitHook = 0, nil
		switch {
		case fault == "full" && !errors.Is(err, berrors.ErrMaxSizeReached):
			t.Fatalf("Append on a full disk = %v, want ErrMaxSizeReached", err)
		case fault == "ambiguous" && !errors.Is(err, ambiguous):
			t.Fatalf("Append with a failing commit = %v, want the commit error", err)
		case fault == "" && err != nil:
			t.Fatal(err)
		}
		if err != nil {
			if len(added) != 0 {
				t.Fatalf("a failed Append returned %d records", len(added))
			}
			return // the poller keeps its watermark and retries with what finished since
		}
		for _, r := range added {
			counted[r.Key]++
		}
		wm = len(all)
	}

	cycle(20, "")
	cycle(20, "")
	cycle(100, "full")
	cycle(10, "full")
	cycle(10, "ambiguous") // stored after all, keys pending
	cycle(10, "ambiguous") // pending, stored before, and new keys
	cycle(100, "full")     // all three kinds again, on a full disk
	cycle(5, "")
	cycle(5, "")
	cycle(5, "ambiguous")
	cycle(5, "")

	for _, r := range all {
		if n := counted[r.Key]; n != 1 {
			t.Errorf("%s returned as new %d times, want once", r.Key, n)
		}
	}
	if len(counted) != len(all) {
		t.Errorf("%d keys returned as new, want %d", len(counted), len(all))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openT(t, dir)
	replayed := map[string]int{}
	for _, r := range replayAll(t, b) {
		replayed[r.Key]++
	}
	for _, r := range all {
		if n := replayed[r.Key]; n != 1 {
			t.Errorf("after a restart, %s replayed %d times, want once", r.Key, n)
		}
	}
	if len(replayed) != len(all) {
		t.Errorf("after a restart, %d records replayed, want %d", len(replayed), len(all))
	}
	if fi, err := os.Stat(filepath.Join(dir, DBFileName)); err == nil {
		t.Logf("%d records, file %d bytes", len(all), fi.Size())
	}
}

// TestPendingReturnedOnceInABatch: a pending key that comes twice in one batch is new once.
func TestPendingReturnedOnceInABatch(t *testing.T) {
	b := newBoltT(t)
	a := rec("a1", t0, "production")
	b.commitHook = func() error { return errors.New("fsync failed") }
	if _, err := b.Append(Batch{Records: []Record{a}}); err == nil {
		t.Fatal("Append with a failing commit succeeded")
	}
	b.commitHook = nil
	if added := mustAppend(t, b, Batch{Records: []Record{a, a}}); len(added) != 1 {
		t.Errorf("retry returned %d records, want 1", len(added))
	}
}
