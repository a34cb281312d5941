package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/go-kit/log/level"
	bolt "go.etcd.io/bbolt"
)

// stateFailed is Record.State of a failed outcome, the only one whose key format 2 changes.
const stateFailed = "failed"

// migrationStats are the counts the migration logs.
type migrationStats struct {
	records int // records in the log
	failed  int // of which failed
	rekeyed int // failed records given an AttemptKey
	// Failed records that keep their key: its AttemptKey is stored already (keyTaken), or the
	// key is not the format-1 Key of the record's own fields, so the rule does not apply to it.
	keyTaken, notFormat1 int
}

// migrateFormat1 turns a format-1 log into format 2 (see README.md, "Format 2"): every failed
// record keyed Key(build, finished_at, environment) is rekeyed AttemptKey(build, k, environment),
// k being the number of outcomes of its (build, environment) that finished before it. It is one
// write transaction: a crash or an error leaves the file at format 1, and the next start
// migrates it again. hook, set by tests only, runs halfway through the rewrites; its error
// aborts the migration.
func (b *Bolt) migrateFormat1(hook func() error) error {
	start := time.Now()
	var st migrationStats
	err := b.db.Update(func(tx *bolt.Tx) error {
		st = migrationStats{}
		rewrites, err := b.planAttemptKeys(tx, &st)
		if err != nil {
			return err
		}
		recs, keys := tx.Bucket(bucketRecords), tx.Bucket(bucketKeys)
		recs.FillPercent = 1.0 // as in Append; the rewritten records only shrink
		var d decoder
		for i, rw := range rewrites {
			if hook != nil && i == len(rewrites)/2 {
				if err := hook(); err != nil {
					return err
				}
			}
			newKey := []byte(rw.key)
			if keys.Get(newKey) != nil {
				// Another record holds it already (a key no collector writes for a format-1
				// log, but bytes are bytes): this one keeps its key rather than losing dedup.
				st.keyTaken++
				continue
			}
			seq := binary.BigEndian.AppendUint64(nil, rw.seq)
			var r Record
			if err := d.decodeRecord(recs.Get(seq), &r); err != nil {
				return &CorruptError{Path: b.path, Err: fmt.Errorf("record %x: %w", seq, err)}
			}
			oldKey := r.Key
			r.Key = rw.key
			if err := recs.Put(seq, appendRecord(nil, &r)); err != nil {
				return err
			}
			if err := keys.Delete([]byte(oldKey)); err != nil {
				return err
			}
			if err := keys.Put(newKey, seq); err != nil {
				return err
			}
			st.rekeyed++
		}
		return tx.Bucket(bucketMeta).Put(keyFormat, []byte{2}) // what this step makes, whatever storeFormat is
	})
	if err != nil {
		if errors.As(err, new(*CorruptError)) {
			return err
		}
		// Not hint(): its "the exporter retries" is about appends; this stops the start.
		return fmt.Errorf("cannot migrate deployment log %s to store format 2: %w (the file is unchanged, still format 1, "+
			"and the next start migrates it again; the migration needs free disk space of about 60%% of the file, and heap "+
			"of about 90%%, see store/README.md)", b.path, err)
	}
	level.Info(b.logger).Log("msg", "Migrated deployment log to store format 2: failed outcomes are now keyed by attempt",
		"path", b.path, "records", st.records, "failed", st.failed, "rekeyed", st.rekeyed,
		"kept_key_taken", st.keyTaken, "kept_not_format1", st.notFormat1, "duration", time.Since(start))
	return nil
}

// rewrite gives the record at sequence seq the key key.
type rewrite struct {
	seq uint64
	key string
}

// pair is the unit attempts are counted in: a build deploying to two environments has one
// outcome per environment per attempt.
type pair struct{ build, env string }

// outcome is one terminal outcome of a pair, as much of it as ordering needs.
type outcome struct {
	finished time.Time
	seq      uint64
	rekey    bool // a failed record with its format-1 key: it gets an AttemptKey
}

// planAttemptKeys returns the rewrites of the migration, in sequence order. Memory stays
// proportional to the builds that failed, not to the log: the first pass keeps only the pairs
// with a failed record, the second only the outcomes of those pairs.
func (b *Bolt) planAttemptKeys(tx *bolt.Tx, st *migrationStats) ([]rewrite, error) {
	recs, keys := tx.Bucket(bucketRecords), tx.Bucket(bucketKeys)
	var d decoder
	each := func(fn func(seq uint64, r *Record)) error {
		var r Record
		return recs.ForEach(func(k, v []byte) error {
			if err := d.decodeRecord(v, &r); err != nil {
				return &CorruptError{Path: b.path, Err: fmt.Errorf("record %x: %w", k, err)}
			}
			if len(k) != 8 {
				return &CorruptError{Path: b.path, Err: fmt.Errorf("record key %x is not a sequence number", k)}
			}
			fn(binary.BigEndian.Uint64(k), &r)
			return nil
		})
	}
	isFormat1Failure := func(r *Record) bool {
		return r.State == stateFailed && r.Key == Key(r.BuildID, r.FinishedAt, r.Environment)
	}

	pairs := map[pair][]outcome{}
	if err := each(func(_ uint64, r *Record) {
		st.records++
		if r.State != stateFailed {
			return
		}
		st.failed++
		if !isFormat1Failure(r) {
			st.notFormat1++
			return
		}
		// Cloned: the decoded id shares one allocation with the record's other strings.
		pairs[pair{strings.Clone(r.BuildID), r.Environment}] = nil
	}); err != nil {
		return nil, err
	}
	if len(pairs) == 0 {
		return nil, nil
	}
	if err := each(func(seq uint64, r *Record) {
		p := pair{r.BuildID, r.Environment}
		if list, ok := pairs[p]; ok {
			pairs[p] = append(list, outcome{finished: r.FinishedAt, seq: seq, rekey: isFormat1Failure(r)})
		}
	}); err != nil {
		return nil, err
	}

	// Outcomes compacted away count too: an earlier failure folded into the base was still
	// followed by a retry. Their records are gone, but their format-1 keys stay in the key
	// index and hold the finish time.
	c := keys.Cursor()
	for p, list := range pairs {
		prefix := []byte(p.build + "@")
		for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
			finished, ok := format1Time(k, p)
			if !ok || len(v) != 8 || recs.Get(v) != nil {
				continue // another kind of key, or a stored record, already counted
			}
			list = append(list, outcome{finished: finished, seq: binary.BigEndian.Uint64(v)})
		}
		pairs[p] = list
	}

	var rewrites []rewrite
	for p, list := range pairs {
		slices.SortFunc(list, func(a, b outcome) int {
			if c := a.finished.Compare(b.finished); c != 0 {
				return c
			}
			return cmp.Compare(a.seq, b.seq)
		})
		for k, o := range list {
			if o.rekey {
				rewrites = append(rewrites, rewrite{seq: o.seq, key: AttemptKey(p.build, k, p.env)})
			}
		}
	}
	// In sequence order the rewrites walk the records bucket once, front to back.
	slices.SortFunc(rewrites, func(a, b rewrite) int { return cmp.Compare(a.seq, b.seq) })
	return rewrites, nil
}

// format1Time returns the finish time of k if k is exactly the format-1 Key of an outcome of p.
func format1Time(k []byte, p pair) (time.Time, bool) {
	rest, ok := bytes.CutPrefix(k, []byte(p.build+"@"))
	if !ok {
		return time.Time{}, false
	}
	ts, ok := bytes.CutSuffix(rest, []byte("#"+p.env))
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil || Key(p.build, t, p.env) != string(k) {
		return time.Time{}, false
	}
	return t, true
}
