package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	bolt "go.etcd.io/bbolt"
)

// TestRecordChecksumInFile changes bytes inside one stored record in the file itself, as a
// damaged disk or a stray write would: the page stays valid for bbolt, the record does not.
// The start (Replay), and Compact, must stop with a *CorruptError naming the record's sequence
// and the way out, rather than count a passed deployment as failed.
func TestRecordChecksumInFile(t *testing.T) {
	dir := t.TempDir()
	fillStore(t, dir, 10)
	path := filepath.Join(dir, DBFileName)
	const seq = 3 // benchRecord(2): passed
	var value []byte
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		value = bytes.Clone(tx.Bucket(bucketRecords).Get(binary8(seq)))
		return nil
	})
	_ = db.Close()
	if value == nil || value[0] != recordEncodingV2 {
		t.Fatalf("record %d: %x, want one in encoding 2", seq, value)
	}
	at := bytes.Index(value, []byte("\x06passed"))
	if at < 0 {
		t.Fatalf("record %d does not hold the state passed", seq)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for off := 0; ; n++ { // every copy bbolt left in the file, freed pages included
		i := bytes.Index(data[off:], value)
		if i < 0 {
			break
		}
		copy(data[off+i+at+1:], "failed")
		off += i + len(value)
	}
	if n == 0 {
		t.Fatal("the record's bytes are not in the file")
	}
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}

	b := openT(t, dir) // opening reads no record
	defer b.Close()
	err = b.Replay(func(Record) error { return nil })
	t.Logf("%v", err)
	assertCorrupt(t, err, dir)
	for _, want := range []string{"record 0000000000000003 (sequence 3)", "checksum mismatch"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Replay error %q does not contain %q", err, want)
		}
	}
	if !errors.Is(err, errChecksum) {
		t.Errorf("Replay error %v does not wrap errChecksum", err)
	}
	err = b.Compact(t0.AddDate(1, 0, 0), func(base []byte, _ []Record) ([]byte, error) { return base, nil })
	assertCorrupt(t, err, dir)
}

// TestCodecChecksum: every change of one byte, or of two neighbouring bytes, of an encoded
// record fails to decode; the same change in encoding 1 (no checksum) can decode to another
// record without a word, which is why encoding 2 exists. Encoding 1 still decodes.
func TestCodecChecksum(t *testing.T) {
	r := rec("a1", t0, "production")
	v2 := appendRecord(nil, &r)
	var d decoder
	for i := range v2 {
		for _, width := range []int{1, 2} {
			if i+width > len(v2) {
				continue
			}
			damaged := bytes.Clone(v2)
			for j := i; j < i+width; j++ {
				damaged[j] ^= 0x5a
			}
			if err := d.decodeRecord(damaged, new(Record)); err == nil {
				t.Errorf("encoding 2 with bytes %d..%d changed decoded without error", i, i+width-1)
			}
		}
	}

	v1 := appendRecordV1(nil, &r)
	if !bytes.Equal(v1[1:], v2[1:len(v2)-4]) || len(v2) != len(v1)+4 {
		t.Fatalf("encoding 2 is not encoding 1's fields and 4 bytes of checksum:\n%x\n%x", v1, v2)
	}
	var got Record
	if err := d.decodeRecord(v1, &got); err != nil || !reflect.DeepEqual(r, got) {
		t.Fatalf("encoding 1 decoded to %+v, %v; want %+v", got, err, r)
	}
	at := bytes.Index(v1, []byte("\x06passed"))
	damaged := bytes.Clone(v1)
	copy(damaged[at+1:], "failed")
	if err := d.decodeRecord(damaged, &got); err != nil || got.State != "failed" {
		t.Fatalf("encoding 1 with its state changed: %+v, %v (the test expects it to decode)", got, err)
	}
	damaged = bytes.Clone(v2)
	copy(damaged[at+1:], "failed")
	if err := d.decodeRecord(damaged, &got); !errors.Is(err, errChecksum) {
		t.Errorf("encoding 2 with its state changed: %v, want a checksum mismatch", err)
	}
	// The checksum covers the version byte too: encoding 2 read as 1 fails.
	asV1 := bytes.Clone(v2)
	asV1[0] = recordEncodingV1
	if err := d.decodeRecord(asV1, &got); err == nil {
		t.Error("encoding 2 marked as 1 decoded without error")
	}
	if sum := binary.LittleEndian.Uint32(v2[len(v2)-4:]); sum == 0 {
		t.Error("checksum is zero")
	}
}

// TestCodecRoundTripV1 decodes every field of encoding 1, as format-1 logs hold it.
func TestCodecRoundTripV1(t *testing.T) {
	for _, r := range []Record{rec("a1", t0, "production"), benchRecord(7), {}} {
		var d decoder
		var got Record
		if err := d.decodeRecord(appendRecordV1(nil, &r), &got); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(r, got); diff != "" || !reflect.DeepEqual(r, got) {
			t.Errorf("encoding 1 round trip (-want +got):\n%s", diff)
		}
		// The migration's shortcut reads the finish time of either encoding.
		for _, enc := range [][]byte{appendRecordV1(nil, &r), appendRecord(nil, &r)} {
			if at, err := d.finishedAt(enc); err != nil || !at.Equal(r.FinishedAt) {
				t.Errorf("finishedAt(encoding %d) = %v, %v; want %v", enc[0], at, err, r.FinishedAt)
			}
		}
	}
	damaged := appendRecord(nil, &Record{Key: "k"})
	damaged[2] ^= 1
	var d decoder
	if _, err := d.finishedAt(damaged); !errors.Is(err, errChecksum) {
		t.Errorf("finishedAt of a damaged record: %v", err)
	}
}
