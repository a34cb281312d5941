package store

import (
	"encoding/binary"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// appendRecordV1 is record encoding 1, as format 1 wrote it: the fields without a checksum.
func appendRecordV1(dst []byte, r *Record) []byte {
	return appendRecordFields(append(dst, recordEncodingV1), r)
}

// format1Log writes logs as the format-1 code did (records in encoding 1, the key index
// mapping a key to its 8-byte sequence, keys kept after compaction, no counters), for the
// migration tests: the code of this package writes format 2 only.
type format1Log struct {
	tb testing.TB
	db *bolt.DB
}

func newFormat1Log(tb testing.TB, dir string) *format1Log {
	tb.Helper()
	db, err := bolt.Open(filepath.Join(dir, DBFileName), 0o600, &bolt.Options{NoSync: true})
	if err != nil {
		tb.Fatal(err)
	}
	if err := db.Update(func(tx *bolt.Tx) error {
		for _, name := range format2Buckets {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyFormat, []byte{1})
	}); err != nil {
		tb.Fatal(err)
	}
	return &format1Log{tb: tb, db: db}
}

// append stores the records whose keys are new, as format 1's Append did.
func (l *format1Log) append(recs []Record, wms map[string]Watermark) {
	l.tb.Helper()
	if err := l.db.Update(func(tx *bolt.Tx) error {
		b, keys := tx.Bucket(bucketRecords), tx.Bucket(bucketKeys)
		b.FillPercent = 1.0
		for _, r := range recs {
			if keys.Get([]byte(r.Key)) != nil {
				continue
			}
			seq, _ := b.NextSequence()
			k := binary.BigEndian.AppendUint64(nil, seq)
			if err := b.Put(k, appendRecordV1(nil, &r)); err != nil {
				return err
			}
			if err := keys.Put([]byte(r.Key), k); err != nil {
				return err
			}
		}
		for org, wm := range wms {
			v := []byte(`{"finished_from":"` + wm.FinishedFrom.Format(time.RFC3339Nano) + `","backfill_done":true}`)
			if err := tx.Bucket(bucketWatermarks).Put([]byte(org), v); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		l.tb.Fatal(err)
	}
}

// compact deletes the records that finished before cutoff and keeps their keys, as format 1's
// Compact did; the base is set to base.
func (l *format1Log) compact(cutoff time.Time, base []byte) {
	l.tb.Helper()
	if err := l.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		var old [][]byte
		var d decoder
		if err := b.ForEach(func(k, v []byte) error {
			var r Record
			if err := d.decodeRecord(v, &r); err != nil {
				return err
			}
			if r.FinishedAt.Before(cutoff) {
				old = append(old, append([]byte(nil), k...))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range old {
			if err := b.Delete(k); err != nil {
				return err
			}
		}
		if base == nil {
			return nil
		}
		return tx.Bucket(bucketMeta).Put(keyBase, base)
	}); err != nil {
		l.tb.Fatal(err)
	}
}

func (l *format1Log) close() {
	l.tb.Helper()
	if err := l.db.Sync(); err != nil {
		l.tb.Fatal(err)
	}
	if err := l.db.Close(); err != nil {
		l.tb.Fatal(err)
	}
}
