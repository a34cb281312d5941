package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/log"
	gocmp "github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// TestKeyFormats pins both key formats: keys are stored, and a change to either would make
// every outcome read again after an upgrade look new.
func TestKeyFormats(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 500, time.FixedZone("CET", 3600))
	for got, want := range map[string]string{
		Key("0190-abc", at, "production"):       "0190-abc@2026-03-01T11:00:00.0000005Z#production",
		AttemptKey("0190-abc", 0, "production"): "0190-abc@attempt:0#production",
		AttemptKey("0190-abc", 12, "eu-west"):   "0190-abc@attempt:12#eu-west",
	} {
		if got != want {
			t.Errorf("key %q, want %q", got, want)
		}
	}
}

// Build ids of testdata/format1/deployments.db (see its README.md).
const (
	fxID        = "0195a0c1-0000-7000-8000-0000000000"
	fxAcrossCut = fxID + "h1" // failed (compacted), failed, passed
	fxFailPass  = fxID + "a1" // failed, passed
	fxFFPass    = fxID + "b1" // failed, failed, passed
	fxTwoEnvs   = fxID + "e1" // failed in production and staging
	fxBackfill  = fxID + "g1" // failed, passed; appended after later builds
)

// fixtureMigratedKeys is what every stored record of the fixture is keyed after the
// migration, by sequence; the others keep their format-1 keys.
var fixtureMigratedKeys = map[uint64]string{
	4:  AttemptKey(fxAcrossCut, 1, "production"), // its first failure, seq 3, was compacted
	6:  AttemptKey(fxFailPass, 0, "production"),
	7:  AttemptKey(fxFFPass, 0, "production"),
	10: AttemptKey(fxTwoEnvs, 0, "production"),
	11: AttemptKey(fxTwoEnvs, 0, "staging"),
	12: AttemptKey(fxFFPass, 1, "production"),
	15: AttemptKey(fxBackfill, 0, "staging"),
}

// copyFixture copies the format-1 fixture into a new storage path.
func copyFixture(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "format1", DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, DBFileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rawLog is a store's content read with bbolt directly, without OpenBolt (which migrates).
type rawLog struct {
	format    byte
	records   map[uint64]Record
	seqs      []uint64 // of records, in key order
	encodings map[byte]int
	keys      map[string]uint64
	finish    map[string]int64 // of keys whose index entry has a finish time (format 2)
}

func readRaw(t *testing.T, dir string) rawLog {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, DBFileName), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw := rawLog{records: map[uint64]Record{}, encodings: map[byte]int{}, keys: map[string]uint64{}, finish: map[string]int64{}}
	err = db.View(func(tx *bolt.Tx) error {
		if f := tx.Bucket(bucketMeta).Get(keyFormat); len(f) == 1 {
			raw.format = f[0]
		}
		var d decoder
		if err := tx.Bucket(bucketRecords).ForEach(func(k, v []byte) error {
			var r Record
			if err := d.decodeRecord(v, &r); err != nil {
				return err
			}
			seq := binary.BigEndian.Uint64(k)
			raw.records[seq] = r
			raw.seqs = append(raw.seqs, seq)
			raw.encodings[v[0]]++
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			raw.keys[string(k)] = binary.BigEndian.Uint64(v)
			if seq, fin, ok := parseKeyValue(v); ok {
				raw.keys[string(k)], raw.finish[string(k)] = seq, fin
			}
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// setFormat overwrites the format marker.
func setFormat(t testing.TB, dir string, f byte) {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, DBFileName), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyFormat, []byte{f}) }); err != nil {
		t.Fatal(err)
	}
}

// openLogged opens dir with a logger writing to the returned buffer.
func openLogged(t *testing.T, dir string, opts BoltOptions) (*Bolt, *bytes.Buffer, error) {
	t.Helper()
	var buf bytes.Buffer
	opts.Logger = log.NewLogfmtLogger(log.NewSyncWriter(&buf))
	b, err := OpenBolt(dir, opts)
	return b, &buf, err
}

// migratedFixture is the fixture as the migration must leave it: every record and key of
// before, the keys of fixtureMigratedKeys replaced, every record in encoding 2, and every key
// with its outcome's finish time (a stored record's, or the one in a compacted record's key).
func migratedFixture(t *testing.T, before rawLog) rawLog {
	t.Helper()
	want := rawLog{format: storeFormat, records: map[uint64]Record{}, seqs: before.seqs, keys: map[string]uint64{},
		encodings: map[byte]int{recordEncodingV2: len(before.records)}, finish: map[string]int64{}}
	for k, seq := range before.keys {
		want.keys[k] = seq
		if _, stored := before.records[seq]; !stored {
			at, ok := keyTime([]byte(k))
			if !ok {
				t.Fatalf("fixture key %q of a compacted record is not a Key", k)
			}
			want.finish[k] = at.Unix()
		}
	}
	for seq, r := range before.records {
		if nk, ok := fixtureMigratedKeys[seq]; ok {
			if r.State != stateFailed {
				t.Fatalf("fixture record %d is %s; the test expects a failure", seq, r.State)
			}
			delete(want.keys, r.Key)
			want.keys[nk] = seq
			r.Key = nk
		}
		want.records[seq] = r
		want.finish[r.Key] = r.FinishedAt.Unix()
	}
	return want
}

// TestMigrateFormat1Fixture opens a format-1 log written by the format-1 code and checks every
// key, the order, the state, and dedup across the migration.
func TestMigrateFormat1Fixture(t *testing.T) {
	dir := copyFixture(t)
	before := readRaw(t, dir)
	if before.format != 1 || len(before.records) != 13 || len(before.keys) != 16 || before.encodings[recordEncodingV1] != 13 || len(before.finish) != 0 {
		t.Fatalf("fixture: format %d, %d records (encodings %v), %d keys (%d with a time); want format 1, 13 records in encoding 1, 16 keys without",
			before.format, len(before.records), before.encodings, len(before.keys), len(before.finish))
	}
	wantState := State{
		Watermarks: map[string]Watermark{"acme": {
			FinishedFrom: time.Date(2026, 3, 1, 12, 35, 0, 0, time.UTC),
			BackfillDone: true,
			Pipelines:    []string{"api-deploy", "db-deploy", "web-deploy"},
		}},
		CommitsFirstSeen: map[string]time.Time{
			CommitKey("api", "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a31"): time.Date(2026, 2, 27, 9, 0, 0, 0, time.UTC),
			CommitKey("web", "3f2a9c1d8e7b6a5f4e3d2c1b0a9f8e7d6c5b4a35"): time.Date(2026, 3, 1, 11, 40, 0, 0, time.UTC),
		},
		Base:      []byte("fixture base: 3 compacted records"),
		Compacted: 3, // sequences 1-3
	}

	b, logged, err := openLogged(t, dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, want := range []string{"level=info", "Migrated deployment log to store format 2", "records are checksummed",
		"Migrated deployment log to store format 3", "base_bytes=33 chunks=1",
		"records=13 failed=7 rekeyed=7 kept_key_taken=0 kept_not_format1=0 keys=16 keys_without_time=0"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log %q does not contain %q", logged, want)
		}
	}

	want := migratedFixture(t, before)
	var wantReplay []Record
	for _, seq := range want.seqs {
		wantReplay = append(wantReplay, want.records[seq])
	}
	if diff := gocmp.Diff(wantReplay, replayAll(t, b)); diff != "" {
		t.Errorf("Replay after the migration (-want +got):\n%s", diff)
	}
	if diff := gocmp.Diff(wantState, mustLoad(t, b), cmpOpts); diff != "" {
		t.Errorf("Load after the migration (-want +got):\n%s", diff)
	}

	// The collector's keys for the migrated failures are known: nothing is counted twice. A
	// failure it has not stored (a third attempt) is new.
	again := []Record{want.records[6], want.records[12], want.records[4]}
	third := want.records[12]
	third.Key = AttemptKey(fxFFPass, 2, "production")
	if added := mustAppend(t, b, Batch{Records: append(again, third)}); !gocmp.Equal(added, []Record{third}) {
		t.Errorf("Append of migrated failures and a new one returned %v, want the new one only", keysOf(added))
	}
	// The format-1 key of a migrated failure is no longer stored: such a record is new. The
	// collector keys a failure by finish time only when it could not read the build's jobs.
	old := before.records[6]
	if added := mustAppend(t, b, Batch{Records: []Record{old}}); len(added) != 1 {
		t.Errorf("Append with the format-1 key of a migrated failure returned %v, want it new", keysOf(added))
	}
	// Passed and canceled keys, and compacted ones, still dedup.
	kept := []Record{before.records[5], before.records[9], before.records[16], rec(fxID+"o2", time.Date(2026, 2, 27, 11, 0, 0, 250e6, time.UTC), "production")}
	if added := mustAppend(t, b, Batch{Records: kept}); len(added) != 0 {
		t.Errorf("Append of stored passed, canceled and compacted outcomes returned %v", keysOf(added))
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	after := readRaw(t, dir)
	if after.format != storeFormat {
		t.Errorf("format after the migration = %d, want %d", after.format, storeFormat)
	}
	if after.encodings[recordEncodingV2] != len(after.records) {
		t.Errorf("record encodings after the migration %v, want all %d in encoding 2", after.encodings, len(after.records))
	}
	if diff := gocmp.Diff(want.finish, after.finish, gocmp.FilterPath(func(p gocmp.Path) bool {
		return strings.HasSuffix(p.GoString(), `[`+strconv.Quote(third.Key)+`]`) || strings.HasSuffix(p.GoString(), `[`+strconv.Quote(old.Key)+`]`)
	}, gocmp.Ignore())); diff != "" {
		t.Errorf("finish times in the key index (-want +got):\n%s", diff)
	}
	// The index after the appends above: the migrated keys plus the two new records'.
	wantKeys := want.keys
	wantKeys[third.Key], wantKeys[old.Key] = 17, 18
	if diff := gocmp.Diff(wantKeys, after.keys); diff != "" {
		t.Errorf("key index (-want +got):\n%s", diff)
	}
}

func keysOf(rs []Record) []string {
	var ks []string
	for _, r := range rs {
		ks = append(ks, r.Key)
	}
	return ks
}

// TestMigrateTwiceChangesNothing: reopening a migrated store writes nothing.
func TestMigrateTwiceChangesNothing(t *testing.T) {
	dir := copyFixture(t)
	b := openT(t, dir)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	migrated, err := os.ReadFile(filepath.Join(dir, DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	b, logged, err := openLogged(t, dir, BoltOptions{migrateHook: func(string, int) error {
		t.Error("the migration ran again")
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logged.String(), "Migrated") {
		t.Errorf("second open logged a migration: %s", logged)
	}
	if again, _ := os.ReadFile(filepath.Join(dir, DBFileName)); !bytes.Equal(migrated, again) {
		t.Error("reopening a migrated store changed the file")
	}
}

// TestMigrateAbortResumes: an error in a step of the migration (disk full, say) stops the
// start and loses that step only; the next open continues where the last committed step
// ended, and the result, counts in the log line included, is that of one uninterrupted run.
func TestMigrateAbortResumes(t *testing.T) {
	for _, at := range []struct {
		step string
		done int
	}{{"records", 0}, {"records", 6}, {"keys", 0}, {"keys", 9}} {
		t.Run(fmt.Sprintf("%s=%d", at.step, at.done), func(t *testing.T) {
			dir := copyFixture(t)
			before := readRaw(t, dir)
			boom := errors.New("injected fault")
			called := false
			_, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger(), migrateStep: 4, migrateHook: func(step string, done int) error {
				if step == at.step && done == at.done {
					called = true
					return boom
				}
				return nil
			}})
			if !called {
				t.Fatal("the migration hook never failed: the fixture has nothing to migrate?")
			}
			if !errors.Is(err, boom) || !strings.Contains(err.Error(), "the next start continues it") || !strings.Contains(err.Error(), DBFileName) {
				t.Fatalf("OpenBolt with a failing migration = %v, want the fault, the file and that the next start continues", err)
			}
			if raw := readRaw(t, dir); raw.format != 2 || len(raw.records) != len(before.records) {
				t.Fatalf("after the failed step: format %d, %d records", raw.format, len(raw.records))
			}
			b, logged, err := openLogged(t, dir, BoltOptions{migrateStep: 4})
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if want := "records=13 failed=7 rekeyed=7 kept_key_taken=0 kept_not_format1=0 keys=16 keys_without_time=0 resumed=true"; !strings.Contains(logged.String(), want) {
				t.Errorf("log %q does not contain %q", logged, want)
			}
			if diff := gocmp.Diff(migratedFixture(t, before), readRaw(t, dir), gocmp.AllowUnexported(rawLog{})); diff != "" {
				t.Errorf("migration after the aborted one (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMigrateKilled kills a process in the middle of a step of the migration, in either
// pass: the steps it committed stay, the one it was in is lost, and the next open continues
// and ends where an uninterrupted migration would.
func TestMigrateKilled(t *testing.T) {
	for _, at := range []string{"records:2", "records:6", "keys:9"} {
		t.Run(at, func(t *testing.T) {
			dir := copyFixture(t)
			before := readRaw(t, dir)
			cmd := helperCmd(t, "", "migrate-hang:"+at, dir)
			out := startHelper(t, cmd)
			waitLine(t, out, "migrating")
			_ = cmd.Process.Signal(syscall.SIGKILL)
			_ = cmd.Wait()
			if raw := readRaw(t, dir); raw.format != 2 || len(raw.records) != len(before.records) {
				t.Fatalf("after the kill: format %d, %d records", raw.format, len(raw.records))
			}
			b := openT(t, dir)
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if diff := gocmp.Diff(migratedFixture(t, before), readRaw(t, dir), gocmp.AllowUnexported(rawLog{})); diff != "" {
				t.Errorf("migration after the killed one (-want +got):\n%s", diff)
			}
		})
	}
}

// TestMigrateKeepsKeysItCannotUse: a failure whose AttemptKey is taken keeps its key, as does
// one whose key is not the format-1 key of its fields; both are counted in the log line.
func TestMigrateKeepsKeysItCannotUse(t *testing.T) {
	dir := t.TempDir()
	failed := func(build string, at time.Time, env string) Record {
		r := rec(build, at, env)
		r.State = stateFailed
		return r
	}
	taken := failed("x1", t0, "production")
	squatter := rec("z1", t0, "production")
	squatter.Key = AttemptKey("x1", 0, "production")
	odd := failed("y1", t0, "production")
	odd.Key = "y1@manual#production"
	moved := failed("w1", t0, "production")
	f1 := newFormat1Log(t, dir)
	f1.append([]Record{taken, squatter, odd, moved}, nil)
	f1.close()

	b, logged, err := openLogged(t, dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if want := "records=4 failed=3 rekeyed=1 kept_key_taken=1 kept_not_format1=1 keys=4 keys_without_time=0"; !strings.Contains(logged.String(), want) {
		t.Errorf("log %q does not contain %q", logged, want)
	}
	moved.Key = AttemptKey("w1", 0, "production")
	if diff := gocmp.Diff([]Record{taken, squatter, odd, moved}, replayAll(t, b)); diff != "" {
		t.Errorf("Replay (-want +got):\n%s", diff)
	}
}

// TestMigrateMatchesModel migrates random format-1 logs (builds retried up to three times,
// one or two environments, appended out of finish order, partly compacted) and compares every
// key with a direct reading of the rule: a stored failure's ordinal is the number of outcomes
// of its build and environment, stored or compacted, that finished before it (sequence breaking
// ties).
func TestMigrateMatchesModel(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	states := []string{"passed", "failed", "failed", "canceled"}
	for round := range 20 {
		dir := t.TempDir()
		var all []Record // in append order; all[i] has sequence i+1
		for build := range 30 {
			id := fmt.Sprintf("b%02d", build)
			envs := []string{"production", "staging"}[:1+rng.IntN(2)]
			at := t0.Add(time.Duration(rng.IntN(48)) * time.Hour)
			for range 1 + rng.IntN(4) {
				st := states[rng.IntN(len(states))]
				for _, env := range envs {
					r := rec(id, at, env)
					r.State = st
					all = append(all, r)
				}
				at = at.Add(time.Duration(1+rng.IntN(120)) * time.Minute)
			}
		}
		rng.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
		f1 := newFormat1Log(t, dir)
		for i := 0; i < len(all); i += 7 {
			f1.append(all[i:min(len(all), i+7)], nil)
		}
		cutoff := t0.Add(time.Duration(rng.IntN(60)) * time.Hour)
		f1.compact(cutoff, nil)
		f1.close()

		var want []Record
		for i, r := range all {
			if r.FinishedAt.Before(cutoff) {
				continue // compacted
			}
			if r.State == stateFailed {
				k := 0
				for j, o := range all {
					if o.BuildID == r.BuildID && o.Environment == r.Environment &&
						cmp.Or(o.FinishedAt.Compare(r.FinishedAt), cmp.Compare(j, i)) < 0 {
						k++
					}
				}
				r.Key = AttemptKey(r.BuildID, k, r.Environment)
			}
			want = append(want, r)
		}
		// In steps of a random size, one of which fails at a random point; the next open
		// continues the migration.
		opts := BoltOptions{Logger: log.NewNopLogger(), migrateStep: 1 + rng.IntN(20)}
		failStep, failAt := []string{"records", "keys"}[rng.IntN(2)], rng.IntN(len(all))
		failOpts := opts
		failOpts.migrateHook = func(step string, done int) error {
			if step == failStep && done == failAt {
				return errors.New("injected fault")
			}
			return nil
		}
		if b, err := OpenBolt(dir, failOpts); err == nil {
			_ = b.Close() // failAt was past the end of that pass
		}
		b, err := OpenBolt(dir, opts)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if diff := gocmp.Diff(want, replayAll(t, b)); diff != "" {
			t.Fatalf("round %d: Replay after the migration (-want +got):\n%s", round, diff)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		// Every stored record is in the index under its key; the index has nothing else but
		// the format-1 keys of compacted records.
		raw := readRaw(t, dir)
		for seq, r := range raw.records {
			if raw.keys[r.Key] != seq {
				t.Fatalf("round %d: record %d keyed %s, but the index maps that key to %d", round, seq, r.Key, raw.keys[r.Key])
			}
		}
		for k, seq := range raw.keys {
			if _, stored := raw.records[seq]; !stored && strings.Contains(k, "@attempt:") {
				t.Fatalf("round %d: index key %s of a record that is not stored", round, k)
			}
		}
		if n := len(raw.keys); n != len(all) {
			t.Fatalf("round %d: %d keys, want %d (one per outcome ever stored)", round, n, len(all))
		}
		// Every key has its outcome's finish time: a stored record's, or the one its
		// format-1 key holds.
		for k, seq := range raw.keys {
			want, stored := raw.records[seq]
			at := want.FinishedAt
			if !stored {
				var ok bool
				if at, ok = keyTime([]byte(k)); !ok {
					t.Fatalf("round %d: compacted key %q is not a Key", round, k)
				}
			}
			if got, ok := raw.finish[k]; !ok || got != at.Unix() {
				t.Fatalf("round %d: key %q has finish time %d (%v), want %d", round, k, got, ok, at.Unix())
			}
		}
	}
}

// helperMigrateHang opens a format-1 store with migration steps of 4 and blocks inside the
// step of at ("records:6": before rewriting the seventh record) until killed.
func helperMigrateHang(dir, at string) int {
	_, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger(), migrateStep: 4, migrateHook: func(step string, done int) error {
		if fmt.Sprintf("%s:%d", step, done) != at {
			return nil
		}
		fmt.Println("migrating")
		time.Sleep(time.Minute) // a sleeping goroutine, not select{}: that would be a deadlock panic
		return errors.New("not killed within a minute")
	}})
	fmt.Println("error: the migration was not killed:", err)
	return 1
}

// TestMigrateCountsAndUnknownTimes: the migration sets the counters from what the log holds
// (appended: the records' sequence; compacted: those no longer stored), marks that
// watermarks were stored, and gives a compacted key it cannot read a time from a finish time
// that no compaction prunes.
func TestMigrateCountsAndUnknownTimes(t *testing.T) {
	dir := t.TempDir()
	odd := rec("q1", t0.Add(-48*time.Hour), "production")
	odd.Key = "q1-imported-by-hand"
	old, kept := rec("r1", t0.Add(-47*time.Hour), "production"), rec("s1", t0, "production")
	f1 := newFormat1Log(t, dir)
	f1.append([]Record{odd, old, kept}, map[string]Watermark{"acme": {FinishedFrom: t0.Add(time.Hour), BackfillDone: true}})
	f1.compact(t0.Add(-time.Hour), []byte("base"))
	f1.close()

	b, logged, err := openLogged(t, dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "records=1 failed=0 rekeyed=0 kept_key_taken=0 kept_not_format1=0 keys=3 keys_without_time=1"; !strings.Contains(logged.String(), want) {
		t.Errorf("log %q does not contain %q", logged, want)
	}
	if st := mustLoad(t, b); st.Compacted != 2 || !st.PrunedBefore.IsZero() {
		t.Errorf("after the migration: Compacted %d, PrunedBefore %v; want 2 and none", st.Compacted, st.PrunedBefore)
	}
	if err := b.Compact(t0.AddDate(1, 0, 0), func(base []byte, _ []Record) ([]byte, error) { return base, nil }); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	raw := readRaw(t, dir)
	// kept's key stays too: acme's next poll re-reads from its watermark less the overlap.
	if diff := gocmp.Diff(map[string]uint64{odd.Key: 1, kept.Key: 3}, raw.keys); diff != "" {
		t.Errorf("keys after compacting everything (-want +got):\n%s", diff)
	}
	if raw.finish[odd.Key] != unknownFinish {
		t.Errorf("finish time of a key without one: %d", raw.finish[odd.Key])
	}
	// Watermarks were stored: emptying them is now refused as damage.
	rawUpdate(t, filepath.Join(dir, DBFileName), func(tx *bolt.Tx) error { return tx.Bucket(bucketWatermarks).Delete([]byte("acme")) })
	_, err = OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger()})
	assertCorrupt(t, err, dir)
}

// TestUpgradePreReleaseFormat2: a format-2 log written before format 2 had checksums, key
// finish times and counters (its failures already keyed by attempt) is completed when opened:
// nothing is rekeyed, everything is re-encoded, and a second open changes nothing.
func TestUpgradePreReleaseFormat2(t *testing.T) {
	dir := t.TempDir()
	failed := rec("f1", t0, "production")
	failed.State = stateFailed
	byTime := failed // a failure whose jobs could not be read: keyed by finish time
	byTime.BuildID, byTime.Key = "g1", Key("g1", t0, "production")
	failed.Key = AttemptKey("f1", 0, "production")
	f1 := newFormat1Log(t, dir)
	f1.append([]Record{failed, byTime, rec("p1", t0, "production")}, nil)
	f1.close()
	setFormat(t, dir, 2)

	b, logged, err := openLogged(t, dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"pre-release of store format 2", "records=3 failed=0 rekeyed=0", "keys=3 keys_without_time=0"} {
		if !strings.Contains(logged.String(), want) {
			t.Errorf("log %q does not contain %q", logged, want)
		}
	}
	if diff := gocmp.Diff([]Record{failed, byTime, rec("p1", t0, "production")}, replayAll(t, b)); diff != "" {
		t.Errorf("Replay (-want +got):\n%s", diff)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	raw := readRaw(t, dir)
	if raw.encodings[recordEncodingV2] != 3 || len(raw.finish) != 3 {
		t.Errorf("after the upgrade: encodings %v, %d keys with a finish time", raw.encodings, len(raw.finish))
	}
	b, logged, err = openLogged(t, dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	_ = b.Close()
	if strings.Contains(logged.String(), "pre-release") {
		t.Errorf("second open upgraded again: %s", logged)
	}
}
