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
	format  byte
	records map[uint64]Record
	seqs    []uint64 // of records, in key order
	keys    map[string]uint64
}

func readRaw(t *testing.T, dir string) rawLog {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, DBFileName), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	raw := rawLog{records: map[uint64]Record{}, keys: map[string]uint64{}}
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
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketKeys).ForEach(func(k, v []byte) error {
			raw.keys[string(k)] = binary.BigEndian.Uint64(v)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// setFormat overwrites the format marker. Formats 1 and 2 share the layout; only the keys of
// failures differ, so a store written by this code with format-1 keys and marked 1 is a
// format-1 log.
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
// before, the keys of fixtureMigratedKeys replaced.
func migratedFixture(t *testing.T, before rawLog) rawLog {
	t.Helper()
	want := rawLog{format: 2, records: map[uint64]Record{}, seqs: before.seqs, keys: map[string]uint64{}}
	for k, seq := range before.keys {
		want.keys[k] = seq
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
	}
	return want
}

// TestMigrateFormat1Fixture opens a format-1 log written by the format-1 code and checks every
// key, the order, the state, and dedup across the migration.
func TestMigrateFormat1Fixture(t *testing.T) {
	dir := copyFixture(t)
	before := readRaw(t, dir)
	if before.format != 1 || len(before.records) != 13 || len(before.keys) != 16 {
		t.Fatalf("fixture: format %d, %d records, %d keys; want format 1, 13 records, 16 keys", before.format, len(before.records), len(before.keys))
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
		Base: []byte("fixture base: 3 compacted records"),
	}

	b, logged, err := openLogged(t, dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for _, want := range []string{"level=info", "Migrated deployment log to store format 2", "records=13 failed=7 rekeyed=7 kept_key_taken=0 kept_not_format1=0"} {
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
	if after.format != 2 {
		t.Errorf("format after the migration = %d, want 2", after.format)
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
	b, logged, err := openLogged(t, dir, BoltOptions{migrateHook: func() error {
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

// TestMigrateAbortLeavesFormat1: an error inside the migration's transaction leaves the file
// as it was; the next open migrates it.
func TestMigrateAbortLeavesFormat1(t *testing.T) {
	dir := copyFixture(t)
	before := readRaw(t, dir)
	boom := errors.New("injected fault")
	called := false
	_, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger(), migrateHook: func() error { called = true; return boom }})
	if !called {
		t.Fatal("the migration hook never ran: the fixture has nothing to migrate?")
	}
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "still format 1") || !strings.Contains(err.Error(), DBFileName) {
		t.Fatalf("OpenBolt with a failing migration = %v, want the fault, the file and that it is still format 1", err)
	}
	if diff := gocmp.Diff(before, readRaw(t, dir), gocmp.AllowUnexported(rawLog{})); diff != "" {
		t.Fatalf("an aborted migration changed the store (-before +after):\n%s", diff)
	}
	b := openT(t, dir)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if diff := gocmp.Diff(migratedFixture(t, before), readRaw(t, dir), gocmp.AllowUnexported(rawLog{})); diff != "" {
		t.Errorf("migration after the aborted one (-want +got):\n%s", diff)
	}
}

// TestMigrateKilled kills a process in the middle of the migration (half the records
// rewritten, not committed): the file stays a format-1 log, and the next open migrates it.
func TestMigrateKilled(t *testing.T) {
	dir := copyFixture(t)
	before := readRaw(t, dir)
	cmd := helperCmd(t, "", "migrate-hang", dir)
	out := startHelper(t, cmd)
	waitLine(t, out, "migrating")
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	if diff := gocmp.Diff(before, readRaw(t, dir), gocmp.AllowUnexported(rawLog{})); diff != "" {
		t.Fatalf("a migration killed midway changed the store (-before +after):\n%s", diff)
	}
	b := openT(t, dir)
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if diff := gocmp.Diff(migratedFixture(t, before), readRaw(t, dir), gocmp.AllowUnexported(rawLog{})); diff != "" {
		t.Errorf("migration after the killed one (-want +got):\n%s", diff)
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
	b := openT(t, dir)
	mustAppend(t, b, Batch{Records: []Record{taken, squatter, odd, moved}})
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	setFormat(t, dir, 1)

	b, logged, err := openLogged(t, dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if want := "records=4 failed=3 rekeyed=1 kept_key_taken=1 kept_not_format1=1"; !strings.Contains(logged.String(), want) {
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
		b := openT(t, dir)
		for i := 0; i < len(all); i += 7 {
			if added := mustAppend(t, b, Batch{Records: all[i:min(len(all), i+7)]}); len(added) != min(7, len(all)-i) {
				t.Fatalf("round %d: setup appended %d", round, len(added))
			}
		}
		cutoff := t0.Add(time.Duration(rng.IntN(60)) * time.Hour)
		if err := b.Compact(cutoff, func(base []byte, _ []Record) ([]byte, error) { return base, nil }); err != nil {
			t.Fatal(err)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		setFormat(t, dir, 1)

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
		b = openT(t, dir)
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
	}
}

// helperMigrateHang opens a format-1 store and blocks halfway through the migration, inside
// its transaction, until killed.
func helperMigrateHang(dir string) int {
	_, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger(), migrateHook: func() error {
		fmt.Println("migrating")
		time.Sleep(time.Minute) // a sleeping goroutine, not select{}: that would be a deadlock panic
		return errors.New("not killed within a minute")
	}})
	fmt.Println("error: the migration was not killed:", err)
	return 1
}
