package store

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

func openT(t *testing.T, dir string) *Bolt {
	t.Helper()
	b, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		t.Fatalf("OpenBolt: %v", err)
	}
	return b
}

func TestOpenCreatesStoragePath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data", "nested")
	b := openT(t, dir)
	defer b.Close()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o750 {
		t.Errorf("storage path mode = %v, want 0750", perm)
	}
	if b.Path() != filepath.Join(dir, DBFileName) {
		t.Errorf("Path() = %s", b.Path())
	}
	if _, err := os.Stat(filepath.Join(dir, DBFileName)); err != nil {
		t.Errorf("database file: %v", err)
	}
}

func TestOpenRejectsBadPaths(t *testing.T) {
	if _, err := OpenBolt("", BoltOptions{}); err == nil {
		t.Error("OpenBolt(\"\") succeeded")
	}
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := OpenBolt(file, BoltOptions{})
	if err == nil || !strings.Contains(err.Error(), file) {
		t.Errorf("OpenBolt(a file) = %v, want an error naming it", err)
	}
}

// TestRestartContinuity: what was appended before Close is replayed after reopening, in
// order; keys stay deduplicated across the restart; new records follow the old ones.
func TestRestartContinuity(t *testing.T) {
	dir := t.TempDir()
	var want []Record
	for i := range 3 {
		b := openT(t, dir)
		var batch Batch
		for j := range 100 {
			batch.Records = append(batch.Records, rec(fmt.Sprintf("r%d-%03d", i, j), t0.Add(time.Duration(i*100+j)*time.Minute), "production"))
		}
		batch.Watermarks = map[string]Watermark{"acme": {FinishedFrom: t0.Add(time.Duration(i) * time.Hour), BackfillDone: true}}
		batch.CommitsFirstSeen = map[string]time.Time{CommitKey("svc", strconv.Itoa(i)): t0}
		// The previous run's last record comes again (poll overlap): not new.
		if len(want) > 0 {
			batch.Records = append([]Record{want[len(want)-1]}, batch.Records...)
		}
		added, err := b.Append(batch)
		if err != nil {
			t.Fatal(err)
		}
		if len(added) != 100 {
			t.Errorf("run %d: Append added %d records, want 100 (the overlap is stored already)", i, len(added))
		}
		want = append(want, added...)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}

		b = openT(t, dir)
		if diff := cmp.Diff(want, replayAll(t, b)); diff != "" {
			t.Fatalf("run %d: Replay after reopen (-want +got):\n%s", i, diff)
		}
		st := mustLoad(t, b)
		if wm := st.Watermarks["acme"]; !wm.FinishedFrom.Equal(t0.Add(time.Duration(i)*time.Hour)) || !wm.BackfillDone {
			t.Errorf("run %d: watermark after reopen = %+v", i, wm)
		}
		if len(st.CommitsFirstSeen) != i+1 {
			t.Errorf("run %d: %d commits after reopen, want %d", i, len(st.CommitsFirstSeen), i+1)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReplayCrossesChunks(t *testing.T) {
	b := newBoltT(t)
	n := 2*replayChunk + 17
	var batch Batch
	for i := range n {
		batch.Records = append(batch.Records, rec(fmt.Sprintf("x%07d", i), t0.Add(time.Duration(i)*time.Second), "production"))
	}
	mustAppend(t, b, batch)
	// fn appends while Replay runs: it must not deadlock (Replay holds no transaction while
	// calling fn), and records appended meanwhile may be seen but never twice.
	seen := map[string]int{}
	var order []string
	err := b.Replay(func(r Record) error {
		seen[r.Key]++
		order = append(order, r.BuildID)
		if len(order) == replayChunk {
			_, err := b.Append(Batch{Records: []Record{rec("ylate", t0, "production")}})
			return err
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for k, c := range seen {
		if c != 1 {
			t.Errorf("%s replayed %d times", k, c)
		}
	}
	for i := range n {
		if order[i] != batch.Records[i].BuildID {
			t.Fatalf("record %d replayed as %s, want %s", i, order[i], batch.Records[i].BuildID)
		}
	}
	if len(order) != n+1 {
		t.Errorf("replayed %d records, want %d", len(order), n+1)
	}
}

func TestConcurrentUse(t *testing.T) {
	b := newBoltT(t)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 25 {
				// Workers overlap on half their keys: each key is new exactly once overall.
				r := rec(fmt.Sprintf("k%d-%d", (w%2), i), t0, "production")
				if _, err := b.Append(Batch{Records: []Record{r}, Watermarks: map[string]Watermark{"acme": {FinishedFrom: t0}}}); err != nil {
					t.Error(err)
					return
				}
				if _, err := b.Load(); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if err := b.Replay(func(Record) error { return nil }); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if got := len(replayAll(t, b)); got != 50 {
		t.Errorf("%d records, want 50", got)
	}
}

// TestCodecRoundTrip fills every field of Record, so a field added to Record but not to the
// encoding fails here.
func TestCodecRoundTrip(t *testing.T) {
	var r Record
	v := reflect.ValueOf(&r).Elem()
	for i := range v.NumField() {
		f := v.Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString(fmt.Sprintf("%s-é-%d", v.Type().Field(i).Name, i))
		case reflect.Int:
			f.SetInt(int64(1000 + i))
		case reflect.Float64:
			f.SetFloat(float64(i) + 0.25)
		case reflect.Struct:
			if f.Type() != reflect.TypeFor[time.Time]() {
				t.Fatalf("field %s has type %s: teach the codec and this test", v.Type().Field(i).Name, f.Type())
			}
			f.Set(reflect.ValueOf(time.Date(2026, 1, 2, 3, 4, 5, 6000+i, time.UTC)))
		default:
			t.Fatalf("field %s has kind %s: teach the codec and this test", v.Type().Field(i).Name, f.Kind())
		}
	}
	cases := map[string]Record{
		"all fields": r,
		"zero":       {},
		"minimal":    {Key: "k", State: "failed", FinishedAt: t0, LeadTimeSeconds: -1, ApprovalWaitSeconds: -1, BuildNumber: -3},
		"pre-1970":   {Key: "k", CreatedAt: time.Date(1900, 1, 1, 0, 0, 0, 1, time.UTC)},
	}
	for name, want := range cases {
		var d decoder
		var got Record
		if err := d.decodeRecord(appendRecord(nil, &want), &got); err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		// Exact equality, not just the same instant: the zero time must stay IsZero.
		if !reflect.DeepEqual(want, got) {
			t.Errorf("%s: round trip changed the record:\n%s", name, cmp.Diff(want, got))
		}
	}
}

func TestCodecRejectsDamage(t *testing.T) {
	r := rec("a1", t0, "production")
	enc := appendRecord(nil, &r)
	var d decoder
	for n := range len(enc) {
		if err := d.decodeRecord(enc[:n], new(Record)); err == nil {
			t.Errorf("a record cut to %d of %d bytes decoded without error", n, len(enc))
		}
		if err := d.check(enc[:n]); err == nil {
			t.Errorf("a record cut to %d of %d bytes passed check", n, len(enc))
		}
	}
	if err := d.check(enc); err != nil {
		t.Errorf("check of a whole record: %v", err)
	}
	if v1 := appendRecordV1(nil, &r); !bytes.Equal(reencodeV1(v1), enc) {
		t.Errorf("reencodeV1 = %x, want %x", reencodeV1(v1), enc)
	}
	if err := d.decodeRecord(append(bytes.Clone(enc), 0), new(Record)); err == nil {
		t.Error("a record with a trailing byte decoded without error")
	}
	newer := bytes.Clone(enc)
	newer[0] = 99
	if err := d.decodeRecord(newer, new(Record)); err == nil || !strings.Contains(err.Error(), "newer version") {
		t.Errorf("unknown encoding: %v", err)
	}
}

func FuzzDecodeRecord(f *testing.F) {
	r := rec("a1", t0, "production")
	f.Add(appendRecord(nil, &r))
	f.Add(appendRecordV1(nil, &r))
	r.DeployedBy, r.ReleaseNotes = "Ada", "notes"
	f.Add(appendRecord(nil, &r))
	f.Add([]byte{1})
	f.Add([]byte{2, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		var d decoder
		var got Record
		err := d.decodeRecord(data, &got)
		if cerr := d.check(data); (err == nil) != (cerr == nil) {
			t.Fatalf("decodeRecord says %v, check says %v", err, cerr)
		}
		if err != nil {
			return
		}
		if data[0] == recordEncodingV1 {
			// The migration's re-encoding keeps the record (compared encoded: NaN equals itself).
			var again Record
			if err := d.decodeRecord(reencodeV1(data), &again); err != nil || !bytes.Equal(appendRecord(nil, &got), appendRecord(nil, &again)) {
				t.Errorf("reencodeV1 changed the record: %+v, %v", again, err)
			}
		}
		// Whatever decodes must survive a round trip unchanged. (Not byte for byte: a varint
		// may be written in more bytes than needed and still decode.)
		// Compared in encoded form, where NaN equals itself.
		enc := appendRecord(nil, &got)
		var again Record
		if err := d.decodeRecord(enc, &again); err != nil || !bytes.Equal(enc, appendRecord(nil, &again)) {
			t.Errorf("re-encoding %+v gave %+v, %v", got, again, err)
		}
	})
}

// TestLockedByAnotherProcess: a second opener fails fast, and its message names the path and
// the holder's pid, host and start time, which the holder wrote next to the database.
func TestLockedByAnotherProcess(t *testing.T) {
	dir := t.TempDir()
	cmd := helperCmd(t, "", "hold", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := startHelper(t, cmd)
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitLine(t, out, "holding")

	start := time.Now()
	_, err = OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger(), LockTimeout: 200 * time.Millisecond})
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("OpenBolt on a held path = %v, want a *LockedError", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("OpenBolt waited %v for the lock, want about the 200ms timeout", waited)
	}
	host, _ := os.Hostname()
	if le.Holder == nil || le.Holder.PID != cmd.Process.Pid || le.Holder.Hostname != host {
		t.Errorf("holder = %+v, want pid %d on %s", le.Holder, cmd.Process.Pid, host)
	}
	msg := err.Error()
	for _, want := range []string{dir, "pid " + strconv.Itoa(cmd.Process.Pid), host, "--storage.path"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not contain %q", msg, want)
		}
	}
	// The refused opener must not have replaced the holder's record.
	if h := readHolder(dir); h == nil || h.PID != cmd.Process.Pid {
		t.Errorf("holder file after a refused open = %+v", h)
	}

	// The holder stops cleanly: the path is free and its holder file gone.
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("holder exited with %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, holderFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("holder file after a clean stop: %v", err)
	}
	b := openT(t, dir)
	if h := readHolder(dir); h == nil || h.PID != os.Getpid() {
		t.Errorf("holder file names %+v, want this process", h)
	}
	_ = b.Close()
}

// TestStaleLockAfterKill: a killed holder leaves its holder file behind, but the kernel drops
// its flock, so the next process opens the store and takes the file over.
func TestStaleLockAfterKill(t *testing.T) {
	dir := t.TempDir()
	cmd := helperCmd(t, "", "hold", dir)
	if _, err := cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out := startHelper(t, cmd)
	waitLine(t, out, "holding")
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if h := readHolder(dir); h == nil || h.PID != cmd.Process.Pid {
		t.Fatalf("holder file after SIGKILL = %+v, want the dead pid (the test relies on a stale file)", h)
	}
	b, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger(), LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("OpenBolt after the holder died: %v", err)
	}
	defer b.Close()
	if h := readHolder(dir); h == nil || h.PID != os.Getpid() {
		t.Errorf("holder file names %+v, want this process", h)
	}
}

func TestLockedInProcessNamesHolder(t *testing.T) {
	dir := t.TempDir()
	b := openT(t, dir)
	defer b.Close()
	_, err := OpenBolt(dir, BoltOptions{LockTimeout: 50 * time.Millisecond})
	var le *LockedError
	if !errors.As(err, &le) || le.Holder == nil || le.Holder.PID != os.Getpid() {
		t.Fatalf("second open in the same process = %v", err)
	}
	// Without a holder file the message still says what to do.
	if err := os.Remove(filepath.Join(dir, holderFileName)); err != nil {
		t.Fatal(err)
	}
	_, err = OpenBolt(dir, BoltOptions{LockTimeout: 50 * time.Millisecond})
	if !errors.As(err, &le) || le.Holder != nil || !strings.Contains(err.Error(), "did not record its pid") {
		t.Errorf("open without a holder file = %v", err)
	}
}

func assertCorrupt(t *testing.T, err error, dir string) {
	t.Helper()
	var ce *CorruptError
	if !errors.As(err, &ce) {
		t.Fatalf("error = %v, want a *CorruptError", err)
	}
	path := filepath.Join(dir, DBFileName)
	msg := err.Error()
	for _, want := range []string{path, "Restore the latest backup to " + path, "mv " + path + " " + path + ".corrupt", "--history.backfill", "older than that window"} {
		if !strings.Contains(msg, want) {
			t.Errorf("message %q does not contain %q", msg, want)
		}
	}
}

// fillStore writes n records in batches of 1,000 and returns the file's size.
func fillStore(t testing.TB, dir string, n int) int64 {
	t.Helper()
	b, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i += 1000 {
		var batch Batch
		for j := i; j < min(n, i+1000); j++ {
			batch.Records = append(batch.Records, benchRecord(j))
		}
		if _, err := b.Append(batch); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func TestCorruptStore(t *testing.T) {
	cases := map[string]func(t *testing.T, path string){
		"garbage": func(t *testing.T, path string) {
			garbage := make([]byte, 64<<10)
			_, _ = rand.NewChaCha8([32]byte{1, 2, 3}).Read(garbage)
			if err := os.WriteFile(path, garbage, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"text file": func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("not a database\n"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"truncated to half": func(t *testing.T, path string) {
			size := fillStore(t, filepath.Dir(path), 5000)
			if err := os.Truncate(path, size/2); err != nil {
				t.Fatal(err)
			}
		},
		"truncated to three pages": func(t *testing.T, path string) {
			fillStore(t, filepath.Dir(path), 5000)
			if err := os.Truncate(path, 3*4096); err != nil {
				t.Fatal(err)
			}
		},
		"both meta pages damaged": func(t *testing.T, path string) {
			fillStore(t, filepath.Dir(path), 100)
			f, err := os.OpenFile(path, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for _, off := range []int64{16, 4096 + 16} { // each meta page's magic number, after the page header
				if _, err := f.WriteAt([]byte("DAMAGE"), off); err != nil {
					t.Fatal(err)
				}
			}
		},
		"another program's bbolt file": func(t *testing.T, path string) {
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error { _, err := tx.CreateBucket([]byte("alerts")); return err }); err != nil {
				t.Fatal(err)
			}
		},
		"empty file": func(t *testing.T, path string) {
			if err := os.WriteFile(path, nil, 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"emptied": func(t *testing.T, path string) {
			fillStore(t, filepath.Dir(path), 100)
			if err := os.Truncate(path, 0); err != nil {
				t.Fatal(err)
			}
		},
		"shorter than a page": func(t *testing.T, path string) {
			fillStore(t, filepath.Dir(path), 100)
			if err := os.Truncate(path, 4000); err != nil {
				t.Fatal(err)
			}
		},
		"records bucket gone": func(t *testing.T, path string) {
			fillStore(t, filepath.Dir(path), 100)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketRecords) })
		},
		"records and keys emptied": func(t *testing.T, path string) {
			fillStore(t, filepath.Dir(path), 100)
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				for _, name := range [][]byte{bucketRecords, bucketKeys} {
					if err := tx.DeleteBucket(name); err != nil {
						return err
					}
					if _, err := tx.CreateBucket(name); err != nil {
						return err
					}
				}
				return nil
			})
		},
		"key index emptied": func(t *testing.T, path string) {
			fillStore(t, filepath.Dir(path), 100)
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				if err := tx.DeleteBucket(bucketKeys); err != nil {
					return err
				}
				_, err := tx.CreateBucket(bucketKeys)
				return err
			})
		},
		"watermarks emptied": func(t *testing.T, path string) {
			b := openT(t, filepath.Dir(path))
			mustAppend(t, b, Batch{Watermarks: map[string]Watermark{"acme": {FinishedFrom: t0, BackfillDone: true}}})
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketWatermarks).Delete([]byte("acme")) })
		},
		"every bucket gone": func(t *testing.T, path string) {
			fillStore(t, filepath.Dir(path), 100)
			rawUpdate(t, path, func(tx *bolt.Tx) error {
				for _, name := range allBuckets {
					if err := tx.DeleteBucket(name); err != nil {
						return err
					}
				}
				return nil
			})
		},
		"counters gone": func(t *testing.T, path string) {
			fillStore(t, filepath.Dir(path), 100)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyAppended) })
		},
		"damaged counter": func(t *testing.T, path string) {
			fillStore(t, filepath.Dir(path), 100)
			rawUpdate(t, path, func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyCompacted, []byte{1}) })
		},
		"newer store format": func(t *testing.T, path string) {
			fillStore(t, filepath.Dir(path), 1)
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte{storeFormat + 1}) }); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, DBFileName)
			damage(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			b, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger(), LockTimeout: 100 * time.Millisecond})
			if err == nil {
				_ = b.Close()
			}
			t.Logf("%v", err)
			assertCorrupt(t, err, dir)
			// Refusing must not touch the evidence.
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("OpenBolt changed the damaged file")
			}
		})
	}
}

// rawUpdate changes a closed store with bbolt directly.
func rawUpdate(t *testing.T, path string, fn func(*bolt.Tx) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(fn); err != nil {
		t.Fatal(err)
	}
}

// TestExpectedButEmptyMessages: the refusals of a log that lost its content say what is gone.
func TestExpectedButEmptyMessages(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, DBFileName)
	fillStore(t, dir, 100)
	b := openT(t, dir)
	if err := b.Compact(t0.Add(30*time.Minute), func(base []byte, _ []Record) ([]byte, error) { return append(base, 'x'), nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	rawUpdate(t, path, func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketRecords); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketRecords)
		return err
	})
	_, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger()})
	assertCorrupt(t, err, dir)
	// benchRecord i finishes at t0 + 37s·i: 49 of the 100 finished before the cutoff.
	if want := "it holds no records, but 100 were stored and 49 of them compacted: 51 records are missing"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	_, err = OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger()})
	assertCorrupt(t, err, dir)
	if want := "the file has 0 bytes"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}

// TestCompactedToEmptyIsNotDamage: a log whose every record was compacted holds no records,
// and that is fine: the counters say so.
func TestCompactedToEmptyIsNotDamage(t *testing.T) {
	dir := t.TempDir()
	b := openT(t, dir)
	mustAppend(t, b, Batch{Records: []Record{rec("a1", t0, "production")}, Watermarks: map[string]Watermark{"acme": {FinishedFrom: t0}}})
	if err := b.Compact(t0.Add(time.Hour), func([]byte, []Record) ([]byte, error) { return nil, nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openT(t, dir)
	defer b.Close()
	if st := mustLoad(t, b); st.Compacted != 1 || len(replayAll(t, b)) != 0 {
		t.Errorf("after compacting everything: Compacted %d, want 1", st.Compacted)
	}
}

// TestCreateIsComplete: a new log appears under its name only once it is complete, so no
// crash leaves an empty deployments.db; a temporary file left by a crash during creation is
// removed. A bbolt file that was never written to (an older version killed while creating
// the log) is still taken as new.
func TestCreateIsComplete(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(dir, DBFileName+".new-123")
	if err := os.WriteFile(stale, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	b := openT(t, dir)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	left, _ := filepath.Glob(filepath.Join(dir, DBFileName+".*"))
	if len(left) != 0 {
		t.Errorf("temporary files after creating the log: %v", left)
	}
	raw := readRaw(t, dir)
	if raw.format != storeFormat {
		t.Errorf("new log has format %d", raw.format)
	}
	db, err := bolt.Open(filepath.Join(dir, DBFileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		for _, name := range allBuckets {
			if tx.Bucket(name) == nil {
				t.Errorf("new log has no %s bucket", name)
			}
		}
		m := tx.Bucket(bucketMeta)
		if n, ok := getUint(m, keyAppended); !ok || n != 0 || m.Get(keyAppended) == nil || m.Get(keyCompacted) == nil {
			t.Errorf("new log's counters: appended %x, compacted %x", m.Get(keyAppended), m.Get(keyCompacted))
		}
		return nil
	})
	_ = db.Close()

	// An older version's interrupted creation: bbolt initialised the file, no bucket yet.
	dir = t.TempDir()
	db, err = bolt.Open(filepath.Join(dir, DBFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	b = openT(t, dir)
	mustAppend(t, b, Batch{Records: []Record{rec("a1", t0, "production")}})
	_ = b.Close()
	b = openT(t, dir)
	defer b.Close()
	if n := len(replayAll(t, b)); n != 1 {
		t.Errorf("%d records, want 1", n)
	}
}

// TestCorruptRecord: damage inside a record value passes bbolt's checks; Replay names it.
func TestCorruptRecord(t *testing.T) {
	dir := t.TempDir()
	fillStore(t, dir, 10)
	db, err := bolt.Open(filepath.Join(dir, DBFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).Put(binary8(5), []byte{1, 200})
	}); err != nil {
		t.Fatal(err)
	}
	_ = db.Close()
	b := openT(t, dir)
	defer b.Close()
	err = b.Replay(func(Record) error { return nil })
	assertCorrupt(t, err, dir)
	if !strings.Contains(err.Error(), "record 0000000000000005") {
		t.Errorf("Replay error %v does not name record 5", err)
	}
}

// TestDamagedPages overwrites data pages of a valid store, which bbolt's open does not notice;
// the start (open + replay) must then fail with a *CorruptError, not crash the process.
func TestDamagedPages(t *testing.T) {
	for name, fill := range map[string]byte{"zeroed": 0x00, "0xff": 0xff} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			size := fillStore(t, dir, 3000)
			f, err := os.OpenFile(filepath.Join(dir, DBFileName), os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			// Pages 4 to the middle of the file: branch and leaf pages of both buckets.
			if _, err := f.WriteAt(bytes.Repeat([]byte{fill}, int(size/2)-4*4096), 4*4096); err != nil {
				t.Fatal(err)
			}
			_ = f.Close()
			b, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger(), LockTimeout: 100 * time.Millisecond})
			if err == nil {
				err = b.Replay(func(Record) error { return nil })
				if err == nil {
					_, err = b.Load()
				}
				_ = b.Close()
			}
			t.Logf("%v", err)
			assertCorrupt(t, err, dir)
		})
	}
}

func binary8(n uint64) []byte {
	return []byte{byte(n >> 56), byte(n >> 48), byte(n >> 40), byte(n >> 32), byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
}

// TestFullDisk: when the file cannot grow, Append fails with an actionable error and stores
// nothing of the batch; what was stored stays readable; after space is freed (here: the cap
// lifted) the same batch is stored once, and its records come back as new.
func TestFullDisk(t *testing.T) {
	dir := t.TempDir()
	const maxSize = 256 << 10
	b, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger(), MaxSize: maxSize})
	if err != nil {
		t.Fatal(err)
	}
	var stored []Record
	var failed Batch
	for i := 0; ; i++ {
		var batch Batch
		for j := range 50 {
			batch.Records = append(batch.Records, rec(fmt.Sprintf("f%04d-%02d", i, j), t0.Add(time.Duration(i)*time.Minute), "production"))
		}
		batch.Watermarks = map[string]Watermark{"acme": {FinishedFrom: t0.Add(time.Duration(i) * time.Minute)}}
		added, err := b.Append(batch)
		if err != nil {
			if !errors.Is(err, berrors.ErrMaxSizeReached) || !strings.Contains(err.Error(), "free space") || !strings.Contains(err.Error(), b.Path()) {
				t.Fatalf("Append on a full store = %v, want ErrMaxSizeReached with a hint and the path", err)
			}
			failed = batch
			break
		}
		stored = append(stored, added...)
		if i > 1000 {
			t.Fatal("the size cap never stopped Append")
		}
	}
	wantWM := stored[len(stored)-1].FinishedAt
	check := func(b *Bolt) {
		t.Helper()
		if diff := cmp.Diff(stored, replayAll(t, b)); diff != "" {
			t.Fatalf("records after the failed Append (-want +got):\n%s", diff)
		}
		if wm := mustLoad(t, b).Watermarks["acme"]; !wm.FinishedFrom.Equal(wantWM) {
			t.Fatalf("watermark = %v, want %v (the failed batch's must not be stored)", wm.FinishedFrom, wantWM)
		}
	}
	check(b)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	b = openT(t, dir)
	defer b.Close()
	check(b)
	added, err := b.Append(failed)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(failed.Records, added); diff != "" {
		t.Errorf("retried batch (-want +got):\n%s", diff)
	}
}

// TestAmbiguousCommit: a commit that reached the disk but reported an error leaves the
// caller's watermark behind; the retried batch must return those records as new, once.
func TestAmbiguousCommit(t *testing.T) {
	b := newBoltT(t)
	batch := Batch{Records: []Record{rec("a1", t0, "production"), rec("b1", t0, "production")}}
	fail := errors.New("fsync: input/output error")
	b.commitHook = func() error { return fail }
	if _, err := b.Append(batch); !errors.Is(err, fail) {
		t.Fatalf("Append = %v, want the commit error", err)
	}
	b.commitHook = nil
	batch.Records = append(batch.Records, rec("c1", t0, "production"))
	added, err := b.Append(batch)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(batch.Records, added); diff != "" {
		t.Errorf("retry after an ambiguous commit (-want +got):\n%s", diff)
	}
	if added, _ := b.Append(batch); len(added) != 0 {
		t.Errorf("a third Append returned %v as new", added)
	}
	if n := len(replayAll(t, b)); n != 3 {
		t.Errorf("%d records stored, want 3", n)
	}
}

func TestAppendRejectsBadKeysWholly(t *testing.T) {
	b := newBoltT(t)
	good := rec("a1", t0, "production")
	for name, batch := range map[string]Batch{
		"empty record key": {Records: []Record{good, {BuildID: "0190-abc"}}},
		"huge record key":  {Records: []Record{good, {Key: strings.Repeat("k", bolt.MaxKeySize+1)}}},
		"empty org":        {Records: []Record{good}, Watermarks: map[string]Watermark{"": {}}},
		"empty commit key": {Records: []Record{good}, CommitsFirstSeen: map[string]time.Time{"": t0}},
	} {
		if _, err := b.Append(batch); err == nil {
			t.Errorf("%s: Append succeeded", name)
		}
	}
	if n := len(replayAll(t, b)); n != 0 {
		t.Errorf("%d records stored from rejected batches", n)
	}
	if _, err := b.Append(Batch{Records: []Record{{BuildID: "0190-abc"}}}); err == nil || !strings.Contains(err.Error(), "0190-abc") {
		t.Errorf("error %v does not name the build", err)
	}
}

func TestBackup(t *testing.T) {
	src := newBoltT(t)
	var batch Batch
	for i := range 500 {
		batch.Records = append(batch.Records, rec(fmt.Sprintf("k%03d", i), t0, "production"))
	}
	batch.Watermarks = map[string]Watermark{"acme": {FinishedFrom: t0, BackfillDone: true}}
	mustAppend(t, src, batch)
	// A base of several chunks: the copy holds them too.
	compactTo(t, src, -120, testBase(20_000, 9))

	dir := t.TempDir()
	f, err := os.Create(filepath.Join(dir, DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	n, err := src.Backup(f)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Error("Backup wrote 0 bytes")
	}
	cp := openT(t, dir)
	defer cp.Close()
	if diff := cmp.Diff(replayAll(t, src), replayAll(t, cp)); diff != "" {
		t.Errorf("restored records (-source +copy):\n%s", diff)
	}
	if diff := cmp.Diff(mustLoad(t, src), mustLoad(t, cp), cmpOpts); diff != "" {
		t.Errorf("restored state (-source +copy):\n%s", diff)
	}
	if _, err := src.Backup(errWriter{}); err == nil {
		t.Error("Backup to a failing writer succeeded")
	}
}

type errWriter struct{}

func (errWriter) Write([]byte) (int, error) { return 0, io.ErrShortWrite }

// TestReadOnlyStoragePath: a storage path the process cannot write stops the start with a
// message naming the path. As root, permissions do not stop writes, so the check runs in a
// helper process started as the unprivileged user nobody (65534).
func TestReadOnlyStoragePath(t *testing.T) {
	cases := map[string]func(t *testing.T, root string) string{
		"cannot create the storage path": func(t *testing.T, root string) string {
			return filepath.Join(root, "data")
		},
		"cannot create the database": func(t *testing.T, root string) string {
			dir := filepath.Join(root, "data")
			if err := os.Mkdir(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			return dir
		},
		"database file read-only": func(t *testing.T, root string) string {
			dir := filepath.Join(root, "data")
			fillStore(t, dir, 10)
			if err := os.Chmod(filepath.Join(dir, DBFileName), 0o444); err != nil {
				t.Fatal(err)
			}
			if err := os.Chmod(dir, 0o555); err != nil {
				t.Fatal(err)
			}
			return dir
		},
	}
	asRoot := os.Geteuid() == 0
	var exe string
	if asRoot {
		exe = copyExecutableForNobody(t)
	}
	for name, setup := range cases {
		t.Run(name, func(t *testing.T) {
			root := worldReadableTempDir(t)
			dir := setup(t, root)
			if err := os.Chmod(root, 0o555); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = os.Chmod(root, 0o755); _ = os.Chmod(dir, 0o755) })
			var msg string
			if asRoot {
				cmd := helperCmd(t, exe, "open", dir)
				cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
				out, err := cmd.Output()
				if err != nil {
					t.Skipf("cannot run the helper as user nobody (%v); a read-only path cannot be tested as root", err)
				}
				msg = strings.TrimSpace(string(out))
			} else if _, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger(), LockTimeout: 100 * time.Millisecond}); err != nil {
				msg = "error: " + err.Error()
			} else {
				msg = "opened"
			}
			if !strings.HasPrefix(msg, "error:") || !strings.Contains(msg, dir) || !strings.Contains(msg, "not writable") {
				t.Errorf("opening a read-only storage path: %q, want an error naming %s and saying it is not writable", msg, dir)
			}
		})
	}
}

// worldReadableTempDir returns a temporary directory that user nobody can traverse.
func worldReadableTempDir(t *testing.T) string {
	dir := t.TempDir()
	for d := dir; d != os.TempDir() && d != "/" && d != "."; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(d) == os.TempDir() {
			break
		}
	}
	return dir
}

// copyExecutableForNobody copies the test binary where user nobody can run it: the go tool
// builds it in a directory only root can enter.
func copyExecutableForNobody(t *testing.T) string {
	src, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(worldReadableTempDir(t), "store.test")
	if err := os.WriteFile(exe, data, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}

// TestCrashSafety kills a process appending batches (as the poller does) at random moments,
// many times, and checks after each kill that the store holds exactly the batches it
// committed: every acknowledged batch once, no batch in part, the watermark at the last batch.
func TestCrashSafety(t *testing.T) {
	if testing.Short() {
		t.Skip("kills 20 subprocesses")
	}
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	dir := t.TempDir()
	kills := 20
	acked := map[int]bool{}
	ackedAdded := 0 // records Append reported as new, over all runs
	for run := range kills {
		cmd := helperCmd(t, "", "ingest", dir)
		out := startHelper(t, cmd)
		// Half the kills land during start-up, half while appending.
		if run%2 == 0 {
			waitLine(t, out, "ready")
		}
		time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
		_ = cmd.Process.Signal(syscall.SIGKILL)
		_ = cmd.Wait()
		runAcked := 0
		for l := range out {
			var n, added int
			if _, err := fmt.Sscanf(l, "acked %d %d", &n, &added); err == nil {
				if acked[n] && added != 0 {
					t.Errorf("run %d: batch %d was stored before but Append returned %d records as new", run, n, added)
				}
				acked[n] = true
				ackedAdded += added
				runAcked++
			} else if strings.HasPrefix(l, "error") {
				t.Fatalf("run %d: helper: %s", run, l)
			}
		}

		b := openT(t, dir)
		recs := replayAll(t, b)
		st := mustLoad(t, b)
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		if len(recs)%ingestBatchSize != 0 {
			t.Fatalf("run %d: %d records, not whole batches of %d", run, len(recs), ingestBatchSize)
		}
		last := len(recs)/ingestBatchSize - 1 // batches 0..last must be there, in order, once
		for i, r := range recs {
			if want := ingestBatch(i / ingestBatchSize).Records[i%ingestBatchSize]; !cmp.Equal(want, r) {
				t.Fatalf("run %d: record %d is %s, want %s", run, i, r.Key, want.Key)
			}
		}
		for n := range acked {
			if n > last {
				t.Fatalf("run %d: acknowledged batch %d is missing (the store ends at batch %d)", run, n, last)
			}
		}
		if last >= 0 {
			if wm := st.Watermarks["acme"]; !wm.FinishedFrom.Equal(ingestTime(last)) {
				t.Fatalf("run %d: watermark %v, want %v (the last stored batch)", run, wm.FinishedFrom, ingestTime(last))
			}
			if len(st.CommitsFirstSeen) != last+1 {
				t.Fatalf("run %d: %d commits, want %d", run, len(st.CommitsFirstSeen), last+1)
			}
		} else if len(st.Watermarks) != 0 {
			t.Fatalf("run %d: watermark %v without records", run, st.Watermarks)
		}
		// Counting: what Append reported as new, plus at most one batch per run committed
		// but killed before its "acked" line, is what the store holds.
		if len(recs) < ackedAdded || len(recs) > ackedAdded+(run+1)*ingestBatchSize {
			t.Fatalf("run %d: %d records stored, but Append reported %d as new", run, len(recs), ackedAdded)
		}
		t.Logf("run %d: %d batches acknowledged this run, %d stored in all", run, runAcked, last+1)
	}
	if len(acked) == 0 {
		t.Error("no batch was ever acknowledged: the kills came too early to test anything")
	}
}

func TestHolderFileJSON(t *testing.T) {
	dir := t.TempDir()
	h := currentHolder(t0)
	if err := writeHolder(dir, h); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(dir, holderFileName))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil || m["pid"] == nil || m["hostname"] == nil || m["started"] == nil {
		t.Errorf("holder file %s: %v", data, err)
	}
	if got := readHolder(dir); got == nil || *got != h {
		t.Errorf("readHolder = %+v, want %+v", got, h)
	}
	// Another holder's file is left alone.
	other := h
	other.PID++
	if err := removeHolder(dir, other); err != nil {
		t.Fatal(err)
	}
	if readHolder(dir) == nil {
		t.Error("removeHolder removed another process's file")
	}
}
