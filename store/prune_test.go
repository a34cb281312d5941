package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/go-kit/log"
	bolt "go.etcd.io/bbolt"
)

// TestCompactPrunesTheFile checks the file itself after a compaction: the keys of outcomes
// that finished before the cutoff and the commits first seen before it are gone from bbolt,
// the recent ones are there with their finish times, and the counters survive a restart.
func TestCompactPrunesTheFile(t *testing.T) {
	dir := t.TempDir()
	b := openT(t, dir)
	var batch Batch
	batch.CommitsFirstSeen = map[string]time.Time{}
	for i := range 100 {
		r := rec(fmt.Sprintf("p%03d", i), t0.Add(time.Duration(i-50)*time.Hour), "production")
		batch.Records = append(batch.Records, r)
		batch.CommitsFirstSeen[CommitKey("svc", r.Commit)] = r.FinishedAt.Add(-time.Hour)
	}
	batch.Watermarks = map[string]Watermark{"acme": {FinishedFrom: t0.Add(50 * time.Hour), BackfillDone: true}}
	mustAppend(t, b, batch)
	if err := b.Compact(t0, func(base []byte, old []Record) ([]byte, error) { return fmt.Appendf(base, "%d", len(old)), nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	raw := readRaw(t, dir)
	for i, r := range batch.Records {
		_, kept := raw.keys[r.Key]
		if want := i >= 50; kept != want {
			t.Errorf("key of an outcome finished at %v: kept %v, want %v", r.FinishedAt, kept, want)
		}
		if kept && raw.finish[r.Key] != r.FinishedAt.Unix() {
			t.Errorf("key %s: finish time %d, want %d", r.Key, raw.finish[r.Key], r.FinishedAt.Unix())
		}
	}
	if len(raw.records) != 50 || len(raw.keys) != 50 {
		t.Errorf("%d records and %d keys after compaction, want 50 of each", len(raw.records), len(raw.keys))
	}

	b = openT(t, dir)
	defer b.Close()
	st := mustLoad(t, b)
	if len(st.CommitsFirstSeen) != 49 { // first seen an hour before its deployment: 51 and later
		t.Errorf("%d commits after compaction, want 49", len(st.CommitsFirstSeen))
	}
	for k, seen := range st.CommitsFirstSeen {
		if seen.Before(t0) {
			t.Errorf("commit %q first seen %v, before the cutoff, was kept", k, seen)
		}
	}
	if st.Compacted != 50 || !st.PrunedBefore.Equal(t0) || string(st.Base) != "50" {
		t.Errorf("after a restart: Compacted %d, PrunedBefore %v, base %q; want 50, %v, \"50\"", st.Compacted, st.PrunedBefore, st.Base, t0)
	}
	if got := mustAppend(t, b, Batch{Records: batch.Records}); len(got) != 0 {
		t.Errorf("after a restart, the whole batch again returned %d records as new", len(got))
	}
}

// BenchmarkSimulatedYear runs the store for a year the way the collector does: 5,000
// deployments a day (50 components, three environments; every commit deployed to all three)
// in 48 batches a day, each with its watermark and commits, and one compaction a day with
// the cutoff now − retention. It reports the file and bbolt's high-water mark at the end, and
// what the buckets hold. STORE_SIM_SCALE=n divides the deployments a day by n (default 10,
// so that the 400-day case, which never compacts within the year but decodes every record at
// each daily compaction, takes a minute and not ten); sizes scale linearly with it.
func BenchmarkSimulatedYear(b *testing.B) {
	scale := 10
	if s, err := strconv.Atoi(os.Getenv("STORE_SIM_SCALE")); err == nil && s > 0 {
		scale = s
	}
	perDay := 5000 / scale
	for _, retentionDays := range []int{400, 30} {
		b.Run(fmt.Sprintf("retention=%dd/scale=1:%d", retentionDays, scale), func(b *testing.B) {
			for b.Loop() {
				simulateYear(b, perDay, retentionDays)
			}
		})
	}
}

func simulateYear(b *testing.B, perDay, retentionDays int) {
	dir := b.TempDir()
	st, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		b.Fatal(err)
	}
	const batches = 48 // a batch every 30 minutes
	// The base a fold keeps is a summary of fixed size (counts by component and environment).
	fold := func(base []byte, old []Record) ([]byte, error) {
		counts := map[string]int{}
		if base != nil {
			if err := json.Unmarshal(base, &counts); err != nil {
				return nil, err
			}
		}
		for _, r := range old {
			counts[r.Component+"/"+r.Environment+"/"+r.State]++
		}
		return json.Marshal(counts)
	}
	start := t0
	i := 0
	for day := range 365 {
		dayStart := start.Add(time.Duration(day) * 24 * time.Hour)
		for n := range batches {
			batch := Batch{CommitsFirstSeen: map[string]time.Time{}}
			end := dayStart.Add(time.Duration(n+1) * 24 * time.Hour / batches)
			for range perDay*(n+1)/batches - perDay*n/batches {
				r := benchRecord(i)
				r.FinishedAt = dayStart.Add(time.Duration(n)*24*time.Hour/batches + time.Duration(len(batch.Records))*time.Second)
				r.Key = Key(r.BuildID, r.FinishedAt, r.Environment)
				// Records i, i+50 and i+100 are one component's three environments: a commit
				// is deployed to each.
				r.Commit = fmt.Sprintf("%040x", (i/150*50+i%50)*7919)
				batch.Records = append(batch.Records, r)
				batch.CommitsFirstSeen[CommitKey(r.Component, r.Commit)] = r.FinishedAt.Add(-time.Hour)
				i++
			}
			batch.Watermarks = map[string]Watermark{"acme-inc": {FinishedFrom: end, BackfillDone: true}}
			if _, err := st.Append(batch); err != nil {
				b.Fatal(err)
			}
		}
		now := dayStart.Add(24 * time.Hour)
		if err := st.Compact(now.Add(-time.Duration(retentionDays)*24*time.Hour), fold); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(dir, DBFileName)
	fi, err := os.Stat(path)
	if err != nil {
		b.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var used int64
	n := map[string]int{}
	_ = db.View(func(tx *bolt.Tx) error {
		used = tx.Size()
		for _, name := range [][]byte{bucketRecords, bucketKeys, bucketCommits} {
			n[string(name)] = tx.Bucket(name).Stats().KeyN
		}
		return nil
	})
	b.ReportMetric(float64(fi.Size())/1e6, "file-MB")
	b.ReportMetric(float64(used)/1e6, "used-MB")
	b.ReportMetric(float64(n["records"]), "records")
	b.ReportMetric(float64(n["keys"]), "keys")
	b.ReportMetric(float64(n["commits"]), "commits")
	b.ReportMetric(float64(i), "deployments")
}
