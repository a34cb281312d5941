package store

import (
	"bytes"
	"encoding/binary"
	"hash/crc32"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// encodeV2 is the version-2 encoding as written before version 3 existed.
func encodeV2(r *Record) []byte {
	dst := appendRecordFields([]byte{recordEncodingV2}, r)
	return binary.LittleEndian.AppendUint32(dst, crc32.Checksum(dst, castagnoli))
}

// With the option off (no people, no notes) records are written exactly as before: an older
// binary of store format 2 reads them, and nothing personal is on disk.
func TestRecordWithoutPeopleIsVersion2(t *testing.T) {
	r := rec("a1", t0, "production")
	if got, want := appendRecord(nil, &r), encodeV2(&r); !bytes.Equal(got, want) {
		t.Errorf("encoding = %x, want the version-2 bytes %x", got, want)
	}
}

func TestRecordWithPeopleIsVersion3(t *testing.T) {
	for name, set := range map[string]func(*Record){
		"both":          func(r *Record) { r.DeployedBy, r.ReleaseNotes = "Ada Lovelace", "* fixed the thing\n* é" },
		"deployed_by":   func(r *Record) { r.DeployedBy = "Ada" },
		"release notes": func(r *Record) { r.ReleaseNotes = strings.Repeat("n", 4096) },
	} {
		t.Run(name, func(t *testing.T) {
			r := rec("a1", t0, "production")
			set(&r)
			enc := appendRecord(nil, &r)
			if enc[0] != recordEncodingV3 {
				t.Fatalf("version %d, want 3", enc[0])
			}
			var d decoder
			var got Record
			if err := d.decodeRecord(enc, &got); err != nil || !reflect.DeepEqual(r, got) {
				t.Fatalf("round trip: %v\n%s", err, cmp.Diff(r, got))
			}
			if err := d.check(enc); err != nil {
				t.Errorf("check: %v", err)
			}
			if ft, err := d.finishedAt(enc); err != nil || !ft.Equal(r.FinishedAt) {
				t.Errorf("finishedAt = %v, %v", ft, err)
			}
			for n := range len(enc) {
				if err := d.decodeRecord(enc[:n], new(Record)); err == nil {
					t.Fatalf("cut to %d of %d bytes decoded", n, len(enc))
				}
				if err := d.check(enc[:n]); err == nil {
					t.Fatalf("cut to %d of %d bytes passed check", n, len(enc))
				}
			}
			damaged := bytes.Clone(enc)
			damaged[len(damaged)-6] ^= 1 // inside the notes or the name
			if err := d.decodeRecord(damaged, new(Record)); err == nil {
				t.Error("a changed byte of the notes decoded")
			}
			// A version-2 record decoded after a version-3 one has no people.
			old := rec("b2", t0, "staging")
			var again Record
			if err := d.decodeRecord(encodeV2(&old), &again); err != nil || again.DeployedBy != "" || again.ReleaseNotes != "" {
				t.Errorf("version 2 after 3: %+v, %v", again, err)
			}
		})
	}
}

// Stored, replayed, folded at compaction: the people and notes go with their record.
func TestPeopleGoWithTheRecord(t *testing.T) {
	b := newBoltT(t)
	with := rec("a1", t0, "production")
	with.DeployedBy, with.ReleaseNotes = "Ada", "notes"
	without := rec("b2", t0.Add(time.Hour), "production")
	mustAppend(t, b, Batch{Records: []Record{with, without}})
	if diff := cmp.Diff([]Record{with, without}, replayAll(t, b)); diff != "" {
		t.Errorf("replay (-want +got):\n%s", diff)
	}
	var folded []Record
	if err := b.Compact(t0.Add(time.Minute), func(base []byte, old []Record) ([]byte, error) {
		folded = append(folded, old...)
		return []byte("{}"), nil
	}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]Record{with}, folded); diff != "" {
		t.Errorf("fold got (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]Record{without}, replayAll(t, b)); diff != "" {
		t.Errorf("after compaction (-want +got):\n%s", diff)
	}
}
