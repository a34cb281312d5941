package store

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	bolt "go.etcd.io/bbolt"
)

// benchRecord is a realistic record: 50 components, three environments, a UUID build id, a
// full commit SHA, a Buildkite URL.
func benchRecord(i int) Record {
	envs := [...]string{"production", "staging", "development"}
	comp := fmt.Sprintf("payments-service-%02d", i%50)
	finished := t0.Add(time.Duration(i) * 37 * time.Second)
	id := fmt.Sprintf("0190a1b2-c3d4-7e5f-8a9b-%012x", i)
	return Record{
		Key:                 Key(id, finished, envs[i%3]),
		Organization:        "acme-inc",
		Pipeline:            "acme-inc/" + comp + "-deploy",
		Component:           comp,
		Environment:         envs[i%3],
		State:               [...]string{"passed", "passed", "passed", "failed", "canceled"}[i%5],
		BuildID:             id,
		BuildNumber:         i/50 + 1,
		WebURL:              fmt.Sprintf("https://buildkite.com/acme-inc/%s-deploy/builds/%d", comp, i/50+1),
		Commit:              fmt.Sprintf("%040x", i*7919),
		Version:             fmt.Sprintf("v2.%d.%d", i/1000, i%1000),
		CreatedAt:           finished.Add(-14 * time.Minute),
		StartedAt:           finished.Add(-12 * time.Minute),
		FinishedAt:          finished,
		LeadTimeSeconds:     5400,
		ApprovalWaitSeconds: -1,
	}
}

var (
	benchDirsMu sync.Mutex
	benchDirs   []string
)

// benchDir returns a directory that lives until the test binary exits: building a million
// records takes longer than the benchmark, so it is built once and reused across b.N.
func benchDir(tb testing.TB) string {
	dir, err := os.MkdirTemp("", "store-bench-")
	if err != nil {
		tb.Fatal(err)
	}
	benchDirsMu.Lock()
	benchDirs = append(benchDirs, dir)
	benchDirsMu.Unlock()
	return dir
}

func removeBenchDirs() {
	benchDirsMu.Lock()
	defer benchDirsMu.Unlock()
	for _, d := range benchDirs {
		_ = os.RemoveAll(d)
	}
}

var replay1M struct {
	once sync.Once
	dir  string
	size int64
	err  error
}

func BenchmarkReplay1M(b *testing.B) {
	const n = 1_000_000
	replay1M.once.Do(func() {
		replay1M.dir = benchDir(b)
		st, err := OpenBolt(replay1M.dir, BoltOptions{Logger: log.NewNopLogger()})
		if err != nil {
			replay1M.err = err
			return
		}
		for i := 0; i < n && replay1M.err == nil; i += 10_000 {
			batch := Batch{Records: make([]Record, 0, 10_000)}
			for j := i; j < i+10_000; j++ {
				batch.Records = append(batch.Records, benchRecord(j))
			}
			_, replay1M.err = st.Append(batch)
		}
		if err := st.Close(); err != nil && replay1M.err == nil {
			replay1M.err = err
		}
		if fi, err := os.Stat(filepath.Join(replay1M.dir, DBFileName)); err == nil {
			replay1M.size = fi.Size()
		}
	})
	if replay1M.err != nil {
		b.Fatal(replay1M.err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		// What a start does: open, load the state, replay every record.
		st, err := OpenBolt(replay1M.dir, BoltOptions{Logger: log.NewNopLogger()})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := st.Load(); err != nil {
			b.Fatal(err)
		}
		count := 0
		if err := st.Replay(func(Record) error { count++; return nil }); err != nil {
			b.Fatal(err)
		}
		if count != n {
			b.Fatalf("replayed %d records, want %d", count, n)
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(replay1M.size)/1e6, "file-MB")
	b.ReportMetric(float64(replay1M.size)/n, "file-bytes/record")
}

// BenchmarkAppend measures durable appends: every Append is a transaction fsynced to disk, so
// a batch per poll cycle amortises the fsync.
func BenchmarkAppend(b *testing.B) {
	for _, size := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", size), func(b *testing.B) {
			st, err := OpenBolt(b.TempDir(), BoltOptions{Logger: log.NewNopLogger()})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			i := 0
			for b.Loop() {
				batch := Batch{Watermarks: map[string]Watermark{"acme-inc": {FinishedFrom: t0}}}
				for range size {
					batch.Records = append(batch.Records, benchRecord(i))
					i++
				}
				if _, err := st.Append(batch); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(i)/b.Elapsed().Seconds(), "records/s")
		})
	}
}

// BenchmarkDecodeRecord compares the store's encoding with JSON, the reason for the choice.
func BenchmarkDecodeRecord(b *testing.B) {
	r := benchRecord(12345)
	bin := appendRecord(nil, &r)
	js, err := json.Marshal(r)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("binary", func(b *testing.B) {
		b.ReportAllocs()
		var d decoder
		var out Record
		for b.Loop() {
			if err := d.decodeRecord(bin, &out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(bin)), "bytes/record")
	})
	b.Run("json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			var out Record
			if err := json.Unmarshal(js, &out); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(len(js)), "bytes/record")
	})
}

// TestSizePer1000 measures the space per 1,000 deployments that README.md quotes, and keeps it
// from growing unnoticed. "Used" is bbolt's high-water mark; the file itself is grown ahead of
// it (doubling up to 16 MiB, then in 16 MiB steps).
func TestSizePer1000(t *testing.T) {
	const n = 10_000
	dir := t.TempDir()
	size := fillStore(t, dir, n)
	db, err := bolt.Open(filepath.Join(dir, DBFileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var used int64
	_ = db.View(func(tx *bolt.Tx) error { used = tx.Size(); return nil })
	per1000 := used * 1000 / n
	t.Logf("%d records: %d bytes used (%d per 1,000 deployments), file %d bytes", n, used, per1000, size)
	if per1000 > 800_000 {
		t.Errorf("%d bytes per 1,000 deployments, want under 800 kB (about 600 kB expected)", per1000)
	}
	if per1000 < 100_000 {
		t.Errorf("%d bytes per 1,000 deployments: too small to be holding the records", per1000)
	}
}

// migrateRecord is record i of a realistic format-1 log with retries: in every 20 records, one
// build failed and then passed, one failed twice and then passed, and 15 builds finished once
// (13 passed, 2 canceled), so 15% of the records are failures.
func migrateRecord(i int) Record {
	r := benchRecord(i)
	group, slot := i/20, i%20
	switch {
	case slot < 2:
		r.BuildID = fmt.Sprintf("0190a1b2-c3d4-7e5f-9a9b-%012x", 2*group)
		r.State = [...]string{"failed", "passed"}[slot]
	case slot < 5:
		r.BuildID = fmt.Sprintf("0190a1b2-c3d4-7e5f-9a9b-%012x", 2*group+1)
		r.State = [...]string{"failed", "failed", "passed"}[slot-2]
	case slot == 9 || slot == 17:
		r.State = "canceled"
	default:
		r.State = "passed"
	}
	if slot < 5 { // the outcomes of one build deploy to one environment
		r.Environment = [...]string{"production", "staging", "development"}[group%3]
	}
	r.Key = Key(r.BuildID, r.FinishedAt, r.Environment)
	return r
}

// migrateStores are the format-1 stores BenchmarkMigrate builds, by size, once per test binary.
var migrateStores sync.Map // int → *migrateStore

type migrateStore struct {
	once sync.Once
	dir  string
	err  error
}

// BenchmarkMigrate opens a format-1 store of migrateRecord records, which migrates it to
// format 2: 40,000 records (the default retention at 100 deployments a day) and 1,000,000.
// Each iteration migrates a fresh copy; the copy is not timed. peak-heap-MB is the most heap
// the process had in use during the open, sampled every millisecond.
func BenchmarkMigrate(b *testing.B) {
	for _, n := range []int{40_000, 1_000_000} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) { benchmarkMigrate(b, n) })
	}
}

func benchmarkMigrate(b *testing.B, n int) {
	v, _ := migrateStores.LoadOrStore(n, new(migrateStore))
	ms := v.(*migrateStore)
	ms.once.Do(func() {
		ms.dir = benchDir(b)
		// As the format-1 code wrote it: records in encoding 1, keys with their sequence only.
		f1 := newFormat1Log(b, ms.dir)
		for i := 0; i < n; i += 10_000 {
			batch := make([]Record, 0, 10_000)
			for j := i; j < min(n, i+10_000); j++ {
				batch = append(batch, migrateRecord(j))
			}
			f1.append(batch, nil)
		}
		f1.close()
	})
	if ms.err != nil {
		b.Fatal(ms.err)
	}
	src := filepath.Join(ms.dir, DBFileName)
	want := fmt.Sprintf("records=%d failed=%d rekeyed=%d ", n, n*3/20, n*3/20)
	var before, after int64
	var peak uint64
	b.ResetTimer()
	for range b.N {
		b.StopTimer()
		dir := benchDir(b)
		before = copyFile(b, src, filepath.Join(dir, DBFileName))
		runtime.GC()
		stop := sampleHeap(&peak)
		b.StartTimer()

		var logged bytes.Buffer
		st, err := OpenBolt(dir, BoltOptions{Logger: log.NewLogfmtLogger(&logged)})
		if err != nil {
			b.Fatal(err)
		}

		b.StopTimer()
		stop()
		if !strings.Contains(logged.String(), want) {
			b.Fatalf("migration logged %q, want %q", logged.String(), want)
		}
		if err := st.Close(); err != nil {
			b.Fatal(err)
		}
		fi, err := os.Stat(filepath.Join(dir, DBFileName))
		if err != nil {
			b.Fatal(err)
		}
		after = fi.Size()
		_ = os.RemoveAll(dir)
		b.StartTimer()
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(before)/1e6, "file-MB-before")
	b.ReportMetric(float64(after)/1e6, "file-MB-after")
}

// sampleHeap records in *peak the most heap in use (live and not yet swept objects) until the
// returned function is called.
func sampleHeap(peak *uint64) (stop func()) {
	done, finished := make(chan struct{}), make(chan struct{})
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	go func() {
		defer close(finished)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			metrics.Read(s)
			*peak = max(*peak, s[0].Value.Uint64())
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	return func() { close(done); <-finished }
}

func copyFile(tb testing.TB, src, dst string) int64 {
	tb.Helper()
	in, err := os.Open(src)
	if err != nil {
		tb.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, 0o600)
	if err != nil {
		tb.Fatal(err)
	}
	n, err := io.Copy(out, in)
	if err != nil {
		tb.Fatal(err)
	}
	if err := out.Close(); err != nil {
		tb.Fatal(err)
	}
	return n
}
