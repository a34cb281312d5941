package store

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	gocmp "github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// testBase is a base of n bytes, different for every seed, compressible like JSON is not: the
// store must not care what it holds.
func testBase(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 7))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// compactTo appends one record that finished before cutoff and compacts it with a fold that
// returns base, so that every call folds something (fold is not called otherwise).
func compactTo(t *testing.T, b *Bolt, i int, base []byte) {
	t.Helper()
	at := t0.Add(time.Duration(i) * time.Minute)
	mustAppend(t, b, Batch{Records: []Record{rec(fmt.Sprintf("c%04d", i), at, "production")}})
	if err := b.Compact(at.Add(time.Second), func([]byte, []Record) ([]byte, error) { return base, nil }); err != nil {
		t.Fatal(err)
	}
}

// rawBase is the base bucket of a closed store as bbolt sees it.
type rawBase struct {
	chunks   [][]byte
	stats    bolt.BucketStats
	sum      []byte
	metaBase []byte // the format-2 place, which format 3 leaves empty
	pageSize int
}

func readRawBase(t *testing.T, dir string) rawBase {
	t.Helper()
	db, err := bolt.Open(filepath.Join(dir, DBFileName), 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var rb rawBase
	rb.pageSize = db.Info().PageSize
	err = db.View(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		rb.sum, rb.metaBase = bytes.Clone(m.Get(keyBaseSum)), bytes.Clone(m.Get(keyBase))
		bk := tx.Bucket(bucketBase)
		if bk == nil {
			return fmt.Errorf("no base bucket")
		}
		rb.stats = bk.Stats()
		return bk.ForEach(func(k, v []byte) error {
			if want := chunkKey(uint64(len(rb.chunks))); !bytes.Equal(k, want) {
				return fmt.Errorf("chunk key %x, want %x", k, want)
			}
			rb.chunks = append(rb.chunks, bytes.Clone(v))
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return rb
}

// TestBaseChunksFitPages: whatever its size, the base is stored in chunks that bbolt keeps on
// single pages (no overflow page: a value or node larger than a page needs a run of contiguous
// free pages, which the daily rewrite of a one-value base never found, see README.md "Size"),
// a smaller base leaves no chunk behind, and Load returns the same bytes after a restart.
func TestBaseChunksFitPages(t *testing.T) {
	dir := t.TempDir()
	b := openT(t, dir)
	size := baseChunkSize(4096)
	// 1 to 9 chunks (bbolt's last node of a split holds 2 to 4 elements), a base of 3 MB,
	// then smaller ones, an empty one and none.
	sizes := []int{1, size, size + 1, 3*size - 1, 5 * size, 5*size + 7, 9 * size, 3 << 20, 700_001, 2*size + 3, 0}
	i := 0
	for _, n := range sizes {
		i++
		want := testBase(n, uint64(i))
		compactTo(t, b, i, want)
		if got := mustLoad(t, b).Base; !bytes.Equal(got, want) || got == nil {
			t.Fatalf("base of %d bytes: Load returned %d bytes (nil %v), not the base stored", n, len(got), got == nil)
		}
		if err := b.Close(); err != nil {
			t.Fatal(err)
		}
		rb := readRawBase(t, dir)
		if rb.pageSize != 4096 {
			t.Logf("page size %d", rb.pageSize)
		}
		maxChunk := baseChunkSize(rb.pageSize)
		if wantN := (n + maxChunk - 1) / maxChunk; len(rb.chunks) != wantN {
			t.Errorf("base of %d bytes in %d chunks, want %d", n, len(rb.chunks), wantN)
		}
		for j, c := range rb.chunks {
			if len(c) > maxChunk {
				t.Errorf("base of %d bytes: chunk %d has %d bytes, more than %d", n, j, len(c), maxChunk)
			}
		}
		if rb.stats.LeafOverflowN != 0 || rb.stats.BranchOverflowN != 0 {
			t.Errorf("base of %d bytes (%d chunks): the base bucket has %d leaf and %d branch overflow pages, want none: every page a single page",
				n, len(rb.chunks), rb.stats.LeafOverflowN, rb.stats.BranchOverflowN)
		}
		if !bytes.Equal(bytes.Join(rb.chunks, nil), want) || !bytes.Equal(rb.sum, baseSum(want)) || rb.metaBase != nil {
			t.Errorf("base of %d bytes: the chunks, base_sum %x or meta base (%d bytes) are not what was stored", n, rb.sum, len(rb.metaBase))
		}
		b = openT(t, dir)
		if got := mustLoad(t, b).Base; !bytes.Equal(got, want) || got == nil {
			t.Fatalf("base of %d bytes: Load after a restart returned %d bytes", n, len(got))
		}
	}
	// No base at all: no chunk and no base_sum.
	compactTo(t, b, 99, nil)
	if got := mustLoad(t, b).Base; got != nil {
		t.Errorf("Load after a fold returned nil: base %q, want nil", got)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if rb := readRawBase(t, dir); len(rb.chunks) != 0 || rb.sum != nil {
		t.Errorf("after a fold returned nil: %d chunks, base_sum %x", len(rb.chunks), rb.sum)
	}
}

// TestBaseRewriteWritesChangedChunks: Compact writes the chunks of the base that changed only:
// an unchanged base costs no page of the base bucket, a changed byte one chunk's page, a new
// base every page. Counted with bbolt's page writes of the Compact's transaction.
func TestBaseRewriteWritesChangedChunks(t *testing.T) {
	b := openT(t, t.TempDir())
	defer b.Close()
	base := testBase(400*baseChunkSize(4096), 1) // 100 leaf pages of 4 chunks
	compactTo(t, b, 0, base)
	writes := func(i int, next []byte) int64 {
		s := b.db.Stats()
		before := s.TxStats.GetWrite()
		compactTo(t, b, i, next)
		if got := mustLoad(t, b).Base; !bytes.Equal(got, next) {
			t.Fatalf("Load after compaction %d returned another base", i)
		}
		s = b.db.Stats()
		return s.TxStats.GetWrite() - before
	}
	same := writes(1, bytes.Clone(base))
	oneByte := bytes.Clone(base)
	oneByte[len(base)/2] ^= 1
	changed := writes(2, oneByte)
	fresh := writes(3, testBase(len(base), 2))
	t.Logf("pages written by the append and compaction: base unchanged %d, one byte changed %d, a new base %d", same, changed, fresh)
	// The append and the rest of the compaction write the same pages each time, a handful.
	if changed > same+4 || fresh < same+90 {
		t.Errorf("pages written: base unchanged %d, one byte changed %d (want at most 4 more), a new base %d (want at least 90 more: 100 leaf pages)", same, changed, fresh)
	}
}

// TestBaseDamage: a base whose chunks have a gap, one too large, a changed byte, a missing
// tail, or whose length and checksum are missing or malformed, is refused at open (and by a
// read-only open) with a *CorruptError naming the problem; the file is left as it was.
func TestBaseDamage(t *testing.T) {
	base := testBase(10*baseChunkSize(4096)+5, 3) // 11 chunks
	cases := map[string]struct {
		damage func(tx *bolt.Tx) error
		want   string
	}{
		"gap": {func(tx *bolt.Tx) error { return tx.Bucket(bucketBase).Delete(chunkKey(4)) },
			"chunk 4 is missing (the next chunk stored is 5)"},
		"chunk too large": {func(tx *bolt.Tx) error {
			return tx.Bucket(bucketBase).Put(chunkKey(2), bytes.Repeat([]byte{'x'}, baseChunkSize(4096)+1))
		}, fmt.Sprintf("chunk 2 has %d bytes, more than the %d a chunk is written with", baseChunkSize(4096)+1, baseChunkSize(4096))},
		"changed byte": {func(tx *bolt.Tx) error {
			c := bytes.Clone(tx.Bucket(bucketBase).Get(chunkKey(7)))
			c[10] ^= 0x20
			return tx.Bucket(bucketBase).Put(chunkKey(7), c)
		}, "checksum mismatch"},
		"last chunk lost": {func(tx *bolt.Tx) error { return tx.Bucket(bucketBase).Delete(chunkKey(10)) },
			fmt.Sprintf("its 10 chunks hold %d bytes, its length (meta base_sum) says %d: chunks are missing", 10*baseChunkSize(4096), len(base))},
		"chunk added": {func(tx *bolt.Tx) error { return tx.Bucket(bucketBase).Put(chunkKey(11), []byte("more")) },
			fmt.Sprintf("its chunks hold more than the %d bytes", len(base))},
		"not an index": {func(tx *bolt.Tx) error { return tx.Bucket(bucketBase).Put([]byte("zz"), []byte("more")) },
			"chunk key 7a7a is not an 8-byte index"},
		"length and checksum lost": {func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Delete(keyBaseSum) },
			"its chunks are stored but its length and checksum (meta base_sum) are missing"},
		"length and checksum malformed": {func(tx *bolt.Tx) error { return tx.Bucket(bucketMeta).Put(keyBaseSum, []byte{1, 2}) },
			"(meta base_sum) 0102 are not 12 bytes"},
		"absurd length": {func(tx *bolt.Tx) error {
			return tx.Bucket(bucketMeta).Put(keyBaseSum, binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint64(nil, 1<<50), 0))
		}, "its length (meta base_sum) says 1125899906842624 bytes, more than the file holds"},
		"every chunk lost": {func(tx *bolt.Tx) error {
			if err := tx.DeleteBucket(bucketBase); err != nil {
				return err
			}
			_, err := tx.CreateBucket(bucketBase)
			return err
		}, "its 0 chunks hold 0 bytes"},
		"bucket lost": {func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketBase) }, "its base bucket is missing"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			b := openT(t, dir)
			mustAppend(t, b, Batch{Records: []Record{rec("kept", t0.Add(time.Hour), "production")}})
			compactTo(t, b, 0, base)
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			path := filepath.Join(dir, DBFileName)
			rawUpdate(t, path, c.damage)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger()})
			assertCorrupt(t, err, dir)
			if err != nil && !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Error("OpenBolt changed the damaged file")
			}
			_, err = OpenBoltReadOnly(dir, BoltOptions{})
			assertCorrupt(t, err, dir)
			if err != nil && !strings.Contains(err.Error(), c.want) {
				t.Errorf("read-only: error %q does not contain %q", err, c.want)
			}
		})
	}
}

// TestBaseDamageAfterOpen: a base damaged while the store is open (another process cannot,
// but a disk can) fails Load and Compact with a *CorruptError, and Compact changes nothing.
func TestBaseDamageAfterOpen(t *testing.T) {
	dir := t.TempDir()
	b := openT(t, dir)
	defer b.Close()
	base := testBase(3*baseChunkSize(4096), 4)
	compactTo(t, b, 0, base)
	if err := b.db.Update(func(tx *bolt.Tx) error { return tx.Bucket(bucketBase).Delete(chunkKey(1)) }); err != nil {
		t.Fatal(err)
	}
	_, err := b.Load()
	assertCorrupt(t, err, dir)
	if err != nil && !strings.Contains(err.Error(), "chunk 1 is missing") {
		t.Errorf("Load: %v", err)
	}
	mustAppend(t, b, Batch{Records: []Record{rec("late", t0.Add(time.Hour), "production")}})
	called := false
	err = b.Compact(t0.Add(2*time.Hour), func(base []byte, _ []Record) ([]byte, error) { called = true; return base, nil })
	assertCorrupt(t, err, dir)
	if called {
		t.Error("Compact called fold with a damaged base")
	}
	if n := len(replayAll(t, b)); n != 1 {
		t.Errorf("after the refused Compact %d records, want the 1 it did not compact", n)
	}
}

// toFormat2 rewrites a closed store of this code into the layout of format 2, as the format-2
// code left it: the base as one value meta/base, no base bucket, no base_sum, marker 2.
func toFormat2(t *testing.T, dir string) {
	t.Helper()
	rawUpdate(t, filepath.Join(dir, DBFileName), func(tx *bolt.Tx) error {
		base, err := readBase(tx, true)
		if err != nil {
			return err
		}
		m := tx.Bucket(bucketMeta)
		if base != nil {
			if err := m.Put(keyBase, base); err != nil {
				return err
			}
		}
		if err := m.Delete(keyBaseSum); err != nil {
			return err
		}
		if err := tx.DeleteBucket(bucketBase); err != nil {
			return err
		}
		return m.Put(keyFormat, []byte{2})
	})
}

// TestMigrateFormat2Base: opening a format-2 log moves its base into chunks and marks it format
// 3, in one step: Load returns the same base, records, counters and state as before, a second
// open does not migrate again, and a read-only open refuses the format-2 log until then.
func TestMigrateFormat2Base(t *testing.T) {
	for _, n := range []int{0, 10, 1 << 20} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			dir := t.TempDir()
			b := openT(t, dir)
			mustAppend(t, b, Batch{
				Records:          []Record{rec("kept", t0.Add(time.Hour), "production")},
				Watermarks:       map[string]Watermark{"acme": {FinishedFrom: t0.Add(2 * time.Hour), BackfillDone: true}},
				CommitsFirstSeen: map[string]time.Time{CommitKey("api", "abc"): t0.Add(time.Hour)},
			})
			want := testBase(n, 5)
			if n > 0 {
				compactTo(t, b, 0, want)
			} else {
				want = nil // never compacted: no base
			}
			wantState, wantRecords := mustLoad(t, b), replayAll(t, b)
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			toFormat2(t, dir)
			if raw := readRaw(t, dir); raw.format != 2 {
				t.Fatalf("format-2 layout has marker %d", raw.format)
			}
			if _, err := OpenBoltReadOnly(dir, BoltOptions{}); err == nil || !strings.Contains(err.Error(), "older format") {
				t.Errorf("read-only open of a format-2 log = %v, want it refused as an older format", err)
			}

			b, logged, err := openLogged(t, dir, BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			for _, w := range []string{"level=info", "Migrated deployment log to store format 3", fmt.Sprintf("base_bytes=%d", n)} {
				if !strings.Contains(logged.String(), w) {
					t.Errorf("log %q does not contain %q", logged, w)
				}
			}
			st := mustLoad(t, b)
			if !bytes.Equal(st.Base, want) || (want == nil) != (st.Base == nil) {
				t.Errorf("Load after the migration: base of %d bytes, want the %d bytes format 2 held", len(st.Base), len(want))
			}
			if diff := gocmp.Diff(wantState, st, cmpOpts); diff != "" {
				t.Errorf("Load after the migration (-want +got):\n%s", diff)
			}
			if diff := gocmp.Diff(wantRecords, replayAll(t, b)); diff != "" {
				t.Errorf("Replay after the migration (-want +got):\n%s", diff)
			}
			if err := b.Close(); err != nil {
				t.Fatal(err)
			}
			if raw := readRaw(t, dir); raw.format != storeFormat {
				t.Errorf("format after the migration %d, want %d", raw.format, storeFormat)
			}
			rb := readRawBase(t, dir)
			if rb.metaBase != nil || !bytes.Equal(bytes.Join(rb.chunks, nil), want) || rb.stats.LeafOverflowN != 0 {
				t.Errorf("after the migration: meta base of %d bytes, %d chunks, %d overflow pages", len(rb.metaBase), len(rb.chunks), rb.stats.LeafOverflowN)
			}
			b, logged, err = openLogged(t, dir, BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(logged.String(), "Migrated") {
				t.Errorf("second open migrated again: %s", logged)
			}
			if got := mustLoad(t, b).Base; !bytes.Equal(got, want) {
				t.Errorf("Load after a second open: %d bytes, want %d", len(got), len(want))
			}
			ro, err := OpenBoltReadOnly(dir, BoltOptions{LockTimeout: 50 * time.Millisecond})
			if err == nil {
				t.Error("read-only open while the writer holds the log succeeded")
				_ = ro.Close()
			}
			_ = b.Close()
			ro, err = OpenBoltReadOnly(dir, BoltOptions{})
			if err != nil {
				t.Fatal(err)
			}
			defer ro.Close()
			if got := mustLoad(t, ro).Base; !bytes.Equal(got, want) {
				t.Errorf("read-only Load: %d bytes, want %d", len(got), len(want))
			}
		})
	}
}

// TestFormat2BinaryRefusesFormat3: a binary of format 2 must refuse a log of format 3 rather
// than read it (it would find no base in meta and count every compacted deployment as gone).
// It cannot run here, but its check is knownFormat's: format 2's init and OpenBoltReadOnly
// (store/bolt.go and store/readonly.go at the commit before format 3) refuse a marker with
// `len(f) != 1 || f[0] > storeFormat || f[0] == 0`, storeFormat being 2 there. So the marker
// this code writes, given to that check with 2, must be refused; and the same holds for the
// marker a migration from format 2 leaves.
func TestFormat2BinaryRefusesFormat3(t *testing.T) {
	dir := t.TempDir()
	b := openT(t, dir)
	compactTo(t, b, 0, testBase(5000, 6))
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	check := func(what string) {
		raw := readRaw(t, dir)
		err := knownFormat([]byte{raw.format}, 2)
		if err == nil || !strings.Contains(err.Error(), "unknown store format [3] (this binary reads format 2; was it written by a newer version?)") {
			t.Errorf("%s: the format-2 check on marker %d = %v, want it refused", what, raw.format, err)
		}
		if err := knownFormat([]byte{raw.format}, storeFormat); err != nil {
			t.Errorf("%s: this binary refuses its own marker: %v", what, err)
		}
	}
	check("a new log")
	toFormat2(t, dir)
	if raw := readRaw(t, dir); knownFormat([]byte{raw.format}, 2) != nil {
		t.Fatalf("the format-2 check refuses the format-2 layout (marker %d)", raw.format)
	}
	b = openT(t, dir)
	_ = b.Close()
	check("a migrated log")
}

// TestMigrateFormat2Fixture opens a format-2 log written by the format-2 code (testdata/format2,
// see its README.md): the migration moves its base into chunks, and Load returns the bytes the
// format-2 code stored, with the rest of the state and the records unchanged.
func TestMigrateFormat2Fixture(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "format2", DBFileName))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, DBFileName), data, 0o600); err != nil {
		t.Fatal(err)
	}
	before := readRaw(t, dir)
	var stored []byte // the base as format 2 stored it: one value, meta/base
	db, err := bolt.Open(filepath.Join(dir, DBFileName), 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		stored = bytes.Clone(tx.Bucket(bucketMeta).Get(keyBase))
		if tx.Bucket(bucketBase) != nil {
			t.Error("the format-2 fixture has a base bucket")
		}
		return nil
	})
	_ = db.Close()
	var wantBase []byte
	for i := range 200 {
		wantBase = fmt.Appendf(wantBase, "format-2 fixture base line %03d\n", i)
	}
	if before.format != 2 || len(before.records) != 3 || !bytes.Equal(stored, wantBase) {
		t.Fatalf("fixture: format %d, %d records, a base of %d bytes; want format 2, 3 records and the base its README describes",
			before.format, len(before.records), len(stored))
	}

	b, logged, err := openLogged(t, dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range []string{"level=info", "Migrated deployment log to store format 3", fmt.Sprintf("base_bytes=%d chunks=%d", len(stored), (len(stored)+baseChunkSize(4096)-1)/baseChunkSize(4096))} {
		if !strings.Contains(logged.String(), w) {
			t.Errorf("log %q does not contain %q", logged, w)
		}
	}
	st := mustLoad(t, b)
	if !bytes.Equal(st.Base, stored) {
		t.Errorf("Load after the migration returned a base of %d bytes, not the %d the format-2 code stored", len(st.Base), len(stored))
	}
	if st.Compacted != 3 || len(st.CommitsFirstSeen) != 3 || len(st.Watermarks) != 1 || st.PrunedBefore.IsZero() {
		t.Errorf("Load after the migration: compacted %d, %d commits, %d watermarks, pruned before %v; want 3, 3, 1 and a time",
			st.Compacted, len(st.CommitsFirstSeen), len(st.Watermarks), st.PrunedBefore)
	}
	var wantRecords []Record
	for _, seq := range before.seqs {
		wantRecords = append(wantRecords, before.records[seq])
	}
	if diff := gocmp.Diff(wantRecords, replayAll(t, b)); diff != "" {
		t.Errorf("Replay after the migration (-want +got):\n%s", diff)
	}
	// The next compaction folds into the migrated base.
	if err := b.Compact(time.Date(2026, 11, 2, 1, 0, 0, 0, time.UTC), func(base []byte, old []Record) ([]byte, error) {
		return fmt.Appendf(base, "+%d", len(old)), nil
	}); err != nil {
		t.Fatal(err)
	}
	if got := mustLoad(t, b).Base; !bytes.Equal(got, fmt.Appendf(bytes.Clone(stored), "+2")) {
		t.Errorf("base after the next compaction ends %q", got[max(0, len(got)-10):])
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	if after := readRaw(t, dir); after.format != storeFormat {
		t.Errorf("format after the migration %d, want %d", after.format, storeFormat)
	}
	if rb := readRawBase(t, dir); rb.metaBase != nil || len(rb.chunks) < 2 {
		t.Errorf("after the migration: meta base of %d bytes, %d chunks", len(rb.metaBase), len(rb.chunks))
	}
}
