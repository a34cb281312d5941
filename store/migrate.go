package store

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"encoding/json"
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

// migrationStats are the counts the migration logs. They are kept with its progress, so a
// migration resumed after a crash logs the counts of the whole.
type migrationStats struct {
	Records int `json:"records"` // records in the log
	Failed  int `json:"failed"`  // of which failed
	Rekeyed int `json:"rekeyed"` // failed records given an AttemptKey
	// Failed records that keep their key: its AttemptKey is stored already (KeyTaken), or the
	// key is not the format-1 Key of the record's own fields, so the rule does not apply to it.
	KeyTaken   int `json:"kept_key_taken"`
	NotFormat1 int `json:"kept_not_format1"`
	Reencoded  int `json:"reencoded"`         // records rewritten in encoding 2
	Keys       int `json:"keys"`              // key index entries given their finish time
	NoTime     int `json:"keys_without_time"` // of which compacted keys whose finish time cannot be told
}

// migration is the progress of a migration, kept in the meta bucket under keyMigration while it
// runs. Every step is its own transaction and saves the progress with its changes, so a crash
// or an error loses at most the step it interrupted, and the next start continues.
type migration struct {
	From        byte           `json:"from"`         // the format migrated from: 1, or 2 for a pre-release one
	Through     uint64         `json:"through"`      // records up to this sequence are rewritten
	RecordsDone bool           `json:"records_done"` // every record is
	KeysAfter   []byte         `json:"keys_after"`   // key index entries up to this key have their finish time
	KeysVisited int            `json:"keys_visited"` // how many entries that is
	KeysDone    bool           `json:"keys_done"`    // every entry has
	Stats       migrationStats `json:"stats"`
}

var (
	keyMigration        = []byte("migration")      // meta: JSON migration, while one runs
	bucketMigrationPlan = []byte("migration_plan") // sequence → new key of a failed record, while a migration runs
)

// Steps of a migration: records rewritten, or key index entries visited, per transaction.
// Each transaction holds what it changes in memory until its commit; the steps keep that
// small whatever the size of the log (see BenchmarkMigrate).
const (
	migrateRecordsStep = 20_000
	migrateKeysStep    = 50_000
)

// migrate turns a format-1 log, or a format-2 log written by a pre-release version, into
// format 2 (see README.md, "Format 2"), or continues a migration a crash or an error stopped.
// The first step plans the new keys of format 1 (every failed record keyed Key(build,
// finished_at, environment) is rekeyed AttemptKey(build, k, environment), k being the number
// of outcomes of its (build, environment) that finished before it), stores the plan and marks
// the file format 2 with the migration under way. The next steps rewrite the records in
// sequence order, in record encoding 2 and with their new keys, then give every key index
// entry its outcome's finish time; the last sets the counters and removes the plan.
func (b *Bolt) migrate(from byte, opts BoltOptions) error {
	start := time.Now()
	recordsStep, keysStep := migrateRecordsStep, migrateKeysStep
	if opts.migrateStep > 0 {
		recordsStep, keysStep = opts.migrateStep, opts.migrateStep
	}
	var ms migration
	resumed := false
	err := b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyMigration)
		if v == nil {
			return nil
		}
		resumed = true
		if err := json.Unmarshal(v, &ms); err != nil || (ms.From != 1 && ms.From != 2) || tx.Bucket(bucketMigrationPlan) == nil {
			return &CorruptError{Path: b.path, Err: fmt.Errorf("the state of its migration to store format 2 is damaged: %q", v)}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if resumed {
		from = ms.From
	} else {
		err = b.db.Update(func(tx *bolt.Tx) error {
			ms = migration{From: from}
			var rewrites []rewrite
			if from == 1 {
				var err error
				if rewrites, err = b.planAttemptKeys(tx, &ms.Stats); err != nil {
					return err
				}
			} else {
				ms.Stats.Records = tx.Bucket(bucketRecords).Stats().KeyN
			}
			plan, err := tx.CreateBucket(bucketMigrationPlan)
			if err != nil {
				return err
			}
			plan.FillPercent = 1.0 // in sequence order
			for _, rw := range rewrites {
				if err := plan.Put(binary.BigEndian.AppendUint64(nil, rw.seq), []byte(rw.key)); err != nil {
					return err
				}
			}
			if err := tx.Bucket(bucketMeta).Put(keyFormat, []byte{2}); err != nil { // what this makes, whatever storeFormat is
				return err
			}
			return saveMigration(tx, &ms)
		})
		if err != nil {
			return b.migrationError(err, from, false)
		}
	}
	for !ms.RecordsDone && err == nil {
		err = b.db.Update(func(tx *bolt.Tx) error { return b.migrateRecords(tx, &ms, recordsStep, opts.migrateHook) })
	}
	for !ms.KeysDone && err == nil {
		err = b.db.Update(func(tx *bolt.Tx) error { return b.migrateKeys(tx, &ms, keysStep, opts.migrateHook) })
	}
	if err == nil {
		err = b.db.Update(func(tx *bolt.Tx) error { return finishMigration(tx, &ms) })
	}
	if err != nil {
		// A failed step leaves ms ahead of the file; the next start reads it from the file.
		return b.migrationError(err, from, true)
	}
	msg := "Migrated deployment log to store format 2: failed outcomes are now keyed by attempt, records are checksummed"
	if from == 2 {
		msg = "Upgraded deployment log written by a pre-release of store format 2: records are now checksummed"
	}
	st := ms.Stats
	level.Info(b.logger).Log("msg", msg,
		"path", b.path, "records", st.Records, "failed", st.Failed, "rekeyed", st.Rekeyed,
		"kept_key_taken", st.KeyTaken, "kept_not_format1", st.NotFormat1,
		"keys", st.Keys, "keys_without_time", st.NoTime, "resumed", resumed, "duration", time.Since(start))
	return nil
}

func (b *Bolt) migrationError(err error, from byte, started bool) error {
	if errors.As(err, new(*CorruptError)) {
		return err
	}
	state := fmt.Sprintf("the file is unchanged, still format %d, and the next start migrates it", from)
	if started {
		state = "the migration keeps its progress in the file, now marked format 2, and the next start continues it; " +
			"a format-1 binary refuses the file from now on, so to go back, restore the backup taken before the upgrade"
	}
	// Not hint(): its "the exporter retries" is about appends; this stops the start.
	if isFull(err) {
		state = "the migration needs free disk space of about a fifth of the file; " + state
	}
	return fmt.Errorf("cannot migrate deployment log %s to store format 2: %w (%s; see store/README.md)", b.path, err, state)
}

func saveMigration(tx *bolt.Tx, ms *migration) error {
	v, err := json.Marshal(ms)
	if err != nil {
		return err
	}
	return tx.Bucket(bucketMeta).Put(keyMigration, v)
}

type put struct{ k, v []byte }

// migrateRecords rewrites up to n records after ms.Through in encoding 2, with the key the plan
// gives them, and saves the progress.
func (b *Bolt) migrateRecords(tx *bolt.Tx, ms *migration, n int, hook func(step string, done int) error) error {
	recs, keys, plan := tx.Bucket(bucketRecords), tx.Bucket(bucketKeys), tx.Bucket(bucketMigrationPlan)
	recs.FillPercent = 1.0 // as in Append
	var (
		d    decoder
		r    Record
		puts = make([]put, 0, min(n, 4096))
		k, v []byte
	)
	c := recs.Cursor()
	after := binary.BigEndian.AppendUint64(nil, ms.Through) // sequences start at 1
	if k, v = c.Seek(after); bytes.Equal(k, after) {
		k, v = c.Next()
	}
	// The cursor only reads; the records are written back once it is done with them.
	last := ms.Through
	for visited := 0; k != nil && visited < n; k, v = c.Next() {
		visited++
		if len(k) != 8 {
			return &CorruptError{Path: b.path, Err: fmt.Errorf("record key %x is not a sequence number", k)}
		}
		last = binary.BigEndian.Uint64(k)
		if hook != nil {
			if err := hook("records", ms.Stats.Reencoded); err != nil {
				return err
			}
		}
		ms.Stats.Reencoded++
		newKey := bytes.Clone(plan.Get(k)) // nil when the record keeps its key
		if newKey == nil {
			// Fields unchanged: checked, and given their checksum, without decoding.
			if err := d.check(v); err != nil {
				return b.recordError(k, err)
			}
			if v[0] == recordEncodingV1 {
				puts = append(puts, put{bytes.Clone(k), reencodeV1(v)})
			}
			continue
		}
		if err := d.decodeRecord(v, &r); err != nil {
			return b.recordError(k, err)
		}
		if keys.Get(newKey) != nil {
			// Another record holds it already (a key no collector writes for a format-1 log,
			// but bytes are bytes): this one keeps its key rather than losing dedup.
			ms.Stats.KeyTaken++
		} else {
			if err := keys.Delete([]byte(r.Key)); err != nil {
				return err
			}
			r.Key = string(newKey)
			if err := keys.Put(newKey, keyValue(binary.BigEndian.Uint64(k), r.FinishedAt.Unix())); err != nil {
				return err
			}
			ms.Stats.Rekeyed++
			ms.Stats.Keys++
		}
		puts = append(puts, put{bytes.Clone(k), appendRecord(nil, &r)})
	}
	ms.RecordsDone = k == nil
	for _, p := range puts {
		if err := recs.Put(p.k, p.v); err != nil {
			return err
		}
	}
	ms.Through = last
	return saveMigration(tx, ms)
}

// migrateKeys gives up to n key index entries after ms.KeysAfter their outcome's finish time:
// the stored record's, or, for a compacted record, the one in the key when it is a Key; a key
// it cannot be read from is kept for ever. It saves the progress.
func (b *Bolt) migrateKeys(tx *bolt.Tx, ms *migration, n int, hook func(step string, done int) error) error {
	keys, recs := tx.Bucket(bucketKeys), tx.Bucket(bucketRecords)
	var (
		d       decoder
		puts    []put
		k, v    []byte
		visited int
		last    []byte
	)
	c := keys.Cursor()
	if ms.KeysAfter == nil {
		k, v = c.First()
	} else if k, v = c.Seek(ms.KeysAfter); bytes.Equal(k, ms.KeysAfter) {
		k, v = c.Next()
	}
	for ; k != nil && visited < n; k, v = c.Next() {
		if hook != nil {
			if err := hook("keys", ms.KeysVisited); err != nil {
				return err
			}
		}
		visited++
		ms.KeysVisited++
		last = k
		switch len(v) {
		case 16: // written by migrateRecords
			continue
		case 8:
		default:
			return &CorruptError{Path: b.path, Err: fmt.Errorf("key index entry %q: value %x is not a sequence number", k, v)}
		}
		finished := int64(unknownFinish)
		if rv := recs.Get(v); rv != nil {
			t, err := d.finishedAt(rv)
			if err != nil {
				return b.recordError(v, err)
			}
			finished = t.Unix()
		} else if t, ok := keyTime(k); ok {
			finished = t.Unix()
		} else {
			ms.Stats.NoTime++
		}
		puts = append(puts, put{bytes.Clone(k), keyValue(binary.BigEndian.Uint64(v), finished)})
		ms.Stats.Keys++
	}
	ms.KeysDone = k == nil
	if last != nil {
		ms.KeysAfter = bytes.Clone(last) // before the puts: last points into the cursor's page
	}
	for _, p := range puts {
		if err := keys.Put(p.k, p.v); err != nil {
			return err
		}
	}
	return saveMigration(tx, ms)
}

// finishMigration sets the counters from what the log holds, and removes the plan and the
// progress: the log is format 2.
func finishMigration(tx *bolt.Tx, ms *migration) error {
	recs, meta := tx.Bucket(bucketRecords), tx.Bucket(bucketMeta)
	stored := uint64(ms.Stats.Records)
	appended := max(recs.Sequence(), stored) // one sequence per record ever stored
	if err := putUint(meta, keyAppended, appended); err != nil {
		return err
	}
	if err := putUint(meta, keyCompacted, appended-stored); err != nil {
		return err
	}
	if k, _ := tx.Bucket(bucketWatermarks).Cursor().First(); k != nil {
		if err := meta.Put(keyWatermarks, []byte{1}); err != nil {
			return err
		}
	}
	if err := tx.DeleteBucket(bucketMigrationPlan); err != nil {
		return err
	}
	return meta.Delete(keyMigration)
}

// keyTime returns the finish time of k if k is exactly a Key (build@finished_at#environment).
func keyTime(k []byte) (time.Time, bool) {
	build, rest, ok := bytes.Cut(k, []byte("@"))
	if !ok {
		return time.Time{}, false
	}
	ts, env, ok := bytes.Cut(rest, []byte("#")) // a formatted time has no '#'
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339Nano, string(ts))
	if err != nil || Key(string(build), t, string(env)) != string(k) {
		return time.Time{}, false
	}
	return t, true
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
				return b.recordError(k, err)
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
		st.Records++
		if r.State != stateFailed {
			return
		}
		st.Failed++
		if !isFormat1Failure(r) {
			st.NotFormat1++
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
