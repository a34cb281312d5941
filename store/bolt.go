package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"syscall"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// DBFileName is the database file inside the storage path.
const DBFileName = "deployments.db"

// storeFormat is the layout version kept in the meta bucket (see README.md). A binary refuses a
// store with a newer format instead of misreading it, and migrates an older one when it opens
// it. Format 2 keys failed outcomes by attempt (AttemptKey), checksums every record (record
// encoding 2), keeps each key's finish time for pruning and counts what was appended and
// compacted; format 1 keyed every outcome by finish time and had none of the rest. Format 3
// keeps the compacted base in page-sized chunks (bucket base) instead of one value (meta base),
// with its length and checksum; an older binary, which would read "no base", refuses it.
const storeFormat = 3

var (
	bucketMeta       = []byte("meta")       // see the key* names below
	bucketRecords    = []byte("records")    // 8-byte big-endian sequence → encoded Record
	bucketKeys       = []byte("keys")       // Record.Key → keyValue(sequence, finish time)
	bucketWatermarks = []byte("watermarks") // organization → JSON Watermark
	bucketCommits    = []byte("commits")    // CommitKey → time.Time.MarshalBinary
	bucketBase       = []byte("base")       // 8-byte big-endian chunk index → a chunk of the compacted base (format 3)

	// format2Buckets are the buckets of formats 1 and 2; allBuckets those of storeFormat.
	format2Buckets = [][]byte{bucketMeta, bucketRecords, bucketKeys, bucketWatermarks, bucketCommits}
	allBuckets     = [][]byte{bucketMeta, bucketRecords, bucketKeys, bucketWatermarks, bucketCommits, bucketBase}

	keyFormat     = []byte("format")        // one byte, storeFormat
	keyBase       = []byte("base")          // formats 1 and 2: the compacted summary, one value; absent when none
	keyBaseSum    = []byte("base_sum")      // format 3: the base's length and CRC-32C (baseSum); absent when there is no base
	keyAppended   = []byte("appended")      // 8-byte big-endian count of records ever stored
	keyCompacted  = []byte("compacted")     // 8-byte big-endian count of records ever compacted
	keyWatermarks = []byte("watermarks")    // present once a watermark was stored
	keyPruned     = []byte("pruned_before") // 8-byte big-endian Unix seconds; absent when nothing was pruned
)

// minFileSize is the least a bbolt file can hold: two meta pages, a freelist and a root page,
// each at least 1 KiB. bbolt itself would initialise a 0-byte file as a new database.
const minFileSize = 4096

// unknownFinish is the finish time, in the key index, of a key whose outcome's finish time is not
// known (a compacted format-1 key that is not a Key): such a key is never pruned.
const unknownFinish = math.MaxInt64

// keyValue is the key index's value: the record's sequence, then the outcome's finish time in
// Unix seconds (rounded down), both big endian.
func keyValue(seq uint64, finishedUnix int64) []byte {
	v := binary.BigEndian.AppendUint64(make([]byte, 0, 16), seq)
	return binary.BigEndian.AppendUint64(v, uint64(finishedUnix))
}

func parseKeyValue(v []byte) (seq uint64, finishedUnix int64, ok bool) {
	if len(v) != 16 {
		return 0, 0, false
	}
	return binary.BigEndian.Uint64(v), int64(binary.BigEndian.Uint64(v[8:])), true
}

func putUint(m *bolt.Bucket, k []byte, n uint64) error {
	return m.Put(k, binary.BigEndian.AppendUint64(nil, n))
}

// getUint reads a counter of the meta bucket; absent is 0, ok is false for a malformed value.
func getUint(m *bolt.Bucket, k []byte) (n uint64, ok bool) {
	v := m.Get(k)
	if v == nil {
		return 0, true
	}
	if len(v) != 8 {
		return 0, false
	}
	return binary.BigEndian.Uint64(v), true
}

// prunedBefore reads State.PrunedBefore from the meta bucket.
func prunedBefore(m *bolt.Bucket) (time.Time, bool) {
	n, ok := getUint(m, keyPruned)
	if !ok || n == 0 {
		return time.Time{}, ok
	}
	return time.Unix(int64(n), 0).UTC(), true
}

// replayChunk is how many records Replay reads per read transaction. Replay calls fn outside
// any transaction, so fn may append or close without deadlocking on bbolt's locks, and a long
// replay does not pin old pages that writers would otherwise have to leave alone.
const replayChunk = 4096

// BoltOptions configure OpenBolt.
type BoltOptions struct {
	Logger log.Logger
	// LockTimeout is how long to wait for another process to release the store before giving
	// up with a *LockedError. Zero means one second; bbolt itself would wait forever.
	LockTimeout time.Duration
	// MaxSize caps the database file in bytes; when a write would grow it further, Append fails
	// like on a full disk and nothing of the batch is stored. Zero means no cap.
	MaxSize int

	// migrateHook, set by tests, runs before a format migration rewrites a record (step
	// "records") or visits a key index entry ("keys"), done being how many it did before,
	// inside the transaction of that step; an error aborts the step, as a crash there would.
	migrateHook func(step string, done int) error
	// migrateStep, set by tests, replaces the records and keys a migration step handles.
	migrateStep int
}

// Bolt is the durable Log: a bbolt database under the storage path. Every Append is one
// transaction, fsynced before it returns. It is safe for concurrent use.
type Bolt struct {
	logger log.Logger
	dir    string
	path   string // the database file
	holder LockHolder
	// readOnly: opened by OpenBoltReadOnly, which holds no holder file of its own.
	readOnly bool

	mu sync.RWMutex // write-locked only by Close
	db *bolt.DB     // nil once closed

	// pending holds the keys of batches whose Append failed. A failed commit can still have
	// reached the disk (fsync reporting an error after the write, say); the caller then retries
	// the batch, and those records must come back as new rather than as already stored, or they
	// would never be counted.
	pendingMu sync.Mutex
	pending   map[string]bool

	// commitHook, when set by tests, runs after a successful commit and may turn it into a
	// failure, to reproduce a commit that reached the disk but reported an error.
	commitHook func() error
}

var _ Log = (*Bolt)(nil)

// LockedError is returned by OpenBolt when another process holds the storage path.
type LockedError struct {
	Path   string      // the storage path
	Holder *LockHolder // nil when the holder did not say who it is
}

func (e *LockedError) Error() string {
	who := "a process that did not record its pid (an older version, or one still starting)"
	if e.Holder != nil {
		who = e.Holder.String()
	}
	return fmt.Sprintf("storage path %s is locked by another exporter: %s; stop that process or give this one another --storage.path", e.Path, who)
}

// CorruptError is returned when the database cannot be read: damaged, truncated, not a bbolt
// file, or written by a newer version. It is not transient; the way out is in the message.
type CorruptError struct {
	Path string // the database file
	Err  error
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("deployment log %s is corrupt or unreadable: %v. Restore the latest backup to %s, or move the file aside "+
		"(mv %s %s.corrupt) and start again: the exporter creates a new log and backfills --history.backfill of builds from "+
		"Buildkite; deployments older than that window are no longer counted (see store/README.md)", e.Path, e.Err, e.Path, e.Path, e.Path)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// defaults are the logger and lock timeout of opts: a no-op logger and one second when unset.
func (opts BoltOptions) defaults() (log.Logger, time.Duration) {
	logger, timeout := opts.Logger, opts.LockTimeout
	if logger == nil {
		logger = log.NewNopLogger()
	}
	if timeout <= 0 {
		timeout = time.Second
	}
	return logger, timeout
}

// OpenBolt opens or creates the deployment log in the directory dir (the --storage.path),
// creating the directory if needed. It fails with a *LockedError when another process has it
// open, and with a *CorruptError when the file cannot be read.
func OpenBolt(dir string, opts BoltOptions) (*Bolt, error) {
	if dir == "" {
		return nil, errors.New("storage path is empty")
	}
	logger, timeout := opts.defaults()
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create storage path %s: %w%s", dir, err, hint(err))
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cannot use storage path %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("storage path %s is not a directory", dir)
	}
	path := filepath.Join(dir, DBFileName)
	if err := create(dir, path, timeout); err != nil {
		return nil, err
	}

	var db *bolt.DB
	err := guard(path, func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:      timeout,
			FreelistType: bolt.FreelistMapType, // compaction frees many pages; the map scales
			MaxSize:      opts.MaxSize,
			NoSync:       false, // explicit: every commit is fsynced before Append returns
			OpenFile:     openExisting,
		})
		return err
	})
	if err != nil {
		return nil, openError(err, dir, path, hint(err))
	}

	b := &Bolt{logger: logger, dir: dir, path: path, db: db, holder: currentHolder(time.Now())}
	if err := writeHolder(dir, b.holder); err != nil {
		// The flock is the lock; the file only names its holder, so this is not fatal.
		level.Warn(logger).Log("msg", "Cannot record this process as the holder of the storage path", "path", dir, "err", err)
	}
	if err := b.init(opts); err != nil {
		_ = b.Close()
		return nil, err
	}
	size := int64(-1)
	if fi, err := os.Stat(path); err == nil {
		size = fi.Size()
	}
	level.Info(logger).Log("msg", "Opened deployment log", "path", path, "size_bytes", size)
	return b, nil
}

// create makes a new, complete deployment log at path if there is no file there. It builds it
// under a temporary name and links it into place only once it is complete and synced, so a
// deployments.db exists complete or not at all: a crash during the first start leaves no file
// (and perhaps a temporary one, removed by the next start), never an empty one. An empty or
// too short deployments.db is therefore damage, and OpenBolt refuses it instead of letting
// bbolt initialise it as a new database, which would lose the history without a word.
func create(dir, path string, timeout time.Duration) error {
	if _, err := os.Lstat(path); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return nil // there is a file (or it cannot be told): open it, and report its errors there
	}
	// Leftovers of a creation interrupted by a crash; they never held a deployment.
	if stale, err := filepath.Glob(filepath.Join(dir, DBFileName+".new-*")); err == nil {
		for _, f := range stale {
			_ = os.Remove(f)
		}
	}
	fail := func(err error) error {
		return fmt.Errorf("cannot create deployment log %s: %w%s", path, err, hint(err))
	}
	f, err := os.CreateTemp(dir, DBFileName+".new-*")
	if err != nil {
		return fail(err)
	}
	tmp := f.Name()
	defer os.Remove(tmp) // after the link, only a second name of the new log
	if err := f.Close(); err != nil {
		return fail(err)
	}
	db, err := bolt.Open(tmp, 0o600, &bolt.Options{Timeout: timeout, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return fail(err)
	}
	err = db.Update(initStore)
	if cerr := db.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail(err)
	}
	// link, not rename: it never replaces a log another process created meanwhile.
	if err := os.Link(tmp, path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return nil
		}
		// A file system without hard links: rename, unless a log appeared meanwhile.
		if _, serr := os.Lstat(path); !errors.Is(serr, fs.ErrNotExist) {
			return nil
		}
		if err := os.Rename(tmp, path); err != nil {
			return fail(err)
		}
	}
	if err := syncDir(dir); err != nil {
		return fail(err)
	}
	return nil
}

// syncDir makes the directory entries of dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

// openExisting is bbolt's OpenFile: it never creates the file (create does, complete), and it
// refuses one too short to be a bbolt database, which bbolt would initialise as a new one.
func openExisting(name string, flag int, perm os.FileMode) (*os.File, error) {
	f, err := os.OpenFile(name, flag&^os.O_CREATE, perm)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		_ = f.Close()
		return nil, err
	}
	if fi.Size() < minFileSize {
		_ = f.Close()
		return nil, &CorruptError{Path: name, Err: fmt.Errorf("the file has %d bytes, and a deployment log is never shorter than %d, "+
			"not even a new one (it is created complete); it was truncated or replaced", fi.Size(), minFileSize)}
	}
	return f, nil
}

// initStore makes the buckets and meta values of a new, empty log.
func initStore(tx *bolt.Tx) error {
	for _, name := range allBuckets {
		if _, err := tx.CreateBucket(name); err != nil {
			return fmt.Errorf("bucket %s: %w", name, err)
		}
	}
	m := tx.Bucket(bucketMeta)
	if err := m.Put(keyFormat, []byte{storeFormat}); err != nil {
		return err
	}
	if err := putUint(m, keyAppended, 0); err != nil {
		return err
	}
	return putUint(m, keyCompacted, 0)
}

// init checks what a damaged file can hide from bbolt.Open and migrates an older format.
func (b *Bolt) init(opts BoltOptions) error {
	fi, err := os.Stat(b.path)
	if err != nil {
		return fmt.Errorf("cannot stat deployment log %s: %w", b.path, err)
	}
	var (
		format  byte // of the file as found; 0 for a new one
		empty   bool // a bbolt file never written to
		migrate bool // format 1, a pre-release format 2, or a migration under way
	)
	err = guard(b.path, func() error {
		if err := b.db.View(func(tx *bolt.Tx) error {
			// bbolt maps the file and trusts its meta page; if the file is shorter than the
			// meta says, touching the missing pages would kill the process (SIGBUS), so check
			// first.
			if tx.Size() > fi.Size() {
				return fmt.Errorf("file is truncated: it has %d bytes, its metadata needs %d", fi.Size(), tx.Size())
			}
			m := tx.Bucket(bucketMeta)
			if m == nil {
				// No format marker: another program's bbolt database, which must not be
				// written into, or one that lost its buckets.
				if err := tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
					return fmt.Errorf("not a deployment log: it has a bucket %q and no format marker", name)
				}); err != nil {
					return err
				}
				if tx.ID() > 1 {
					// bbolt creates a file with transaction 1; a later one wrote something.
					return fmt.Errorf("the file has been written to (transaction %d) but holds no buckets: its deployment log is gone", tx.ID())
				}
				// A bbolt file never written to: an earlier version, killed while creating
				// the log, left it.
				empty = true
				return nil
			}
			f := m.Get(keyFormat)
			if err := knownFormat(f, storeFormat); err != nil {
				return err
			}
			format = f[0]
			// Every version creates all buckets with the format marker, in one transaction;
			// the migration to format 3 adds the base bucket.
			buckets := allBuckets
			if format < 3 {
				buckets = format2Buckets
			}
			for _, name := range buckets {
				if tx.Bucket(name) == nil {
					return fmt.Errorf("its %s bucket is missing", name)
				}
			}
			if format < 2 || m.Get(keyMigration) != nil {
				migrate = true // below; the migration counts what is there
				return nil
			}
			if m.Get(keyAppended) == nil {
				if format != 2 {
					return errors.New("its counters are missing")
				}
				// A pre-release of format 2 had no counters, but neither checksums nor key
				// finish times: a log with those has lost its counters.
				_, v := tx.Bucket(bucketRecords).Cursor().First()
				_, kv := tx.Bucket(bucketKeys).Cursor().First()
				if (v != nil && (len(v) == 0 || v[0] != recordEncodingV1)) || (kv != nil && len(kv) != 8) {
					return errors.New("its counters are missing")
				}
				migrate = true
				return nil
			}
			return checkExpected(tx, format)
		}); err != nil {
			if !errors.As(err, new(*CorruptError)) {
				err = &CorruptError{Path: b.path, Err: err}
			}
			return err
		}
		if empty {
			return b.db.Update(initStore)
		}
		return nil
	})
	if err != nil {
		if errors.As(err, new(*CorruptError)) {
			return err
		}
		return b.writeError("initialise", err)
	}
	if migrate {
		// A format-2 log without counters was written by a pre-release of format 2, without
		// checksums, key finish times and counters: the migration's rewrite completes it.
		if err := guard(b.path, func() error { return b.migrate(format, opts) }); err != nil {
			return err
		}
	}
	if format < 3 && !empty {
		return guard(b.path, b.migrateBase)
	}
	return nil
}

// knownFormat refuses a format marker f that a binary reading format reads cannot read: a
// newer format, or not a format at all. Every version since format 1 has made this check, so
// a binary of format 2 refuses a file of format 3 rather than reading it without its base.
func knownFormat(f []byte, reads byte) error {
	if len(f) != 1 || f[0] > reads || f[0] == 0 {
		return fmt.Errorf("unknown store format %v (this binary reads format %d; was it written by a newer version?)", f, reads)
	}
	return nil
}

// checkExpected refuses a log of the given format (2 or 3; not under migration) that its own
// meta data says is not empty but is: the records or watermarks it counted are gone (a damaged
// page can hide a bucket's content from bbolt). In format 3 it checks the base's chunks too.
func checkExpected(tx *bolt.Tx, format byte) error {
	m := tx.Bucket(bucketMeta)
	appended, ok1 := getUint(m, keyAppended)
	compacted, ok2 := getUint(m, keyCompacted)
	_, ok3 := prunedBefore(m)
	if !ok1 || !ok2 || !ok3 || compacted > appended {
		return fmt.Errorf("its counters are damaged (appended %x, compacted %x, pruned_before %x)", m.Get(keyAppended), m.Get(keyCompacted), m.Get(keyPruned))
	}
	first, _ := tx.Bucket(bucketRecords).Cursor().First()
	if first == nil && appended > compacted {
		return fmt.Errorf("it holds no records, but %d were stored and %d of them compacted: %d records are missing",
			appended, compacted, appended-compacted)
	}
	if k, _ := tx.Bucket(bucketKeys).Cursor().First(); first != nil && k == nil {
		return errors.New("it holds records but its key index is empty")
	}
	if k, _ := tx.Bucket(bucketWatermarks).Cursor().First(); k == nil && m.Get(keyWatermarks) != nil {
		return errors.New("it holds no watermarks, but watermarks were stored")
	}
	if format >= 3 {
		if _, err := readBase(tx, false); err != nil {
			return err
		}
	}
	return nil
}

// Path returns the database file.
func (b *Bolt) Path() string { return b.path }

// Append implements Log. The batch is one bbolt transaction: on any error nothing of it is
// stored, and the caller must not move its watermark.
func (b *Bolt) Append(batch Batch) ([]Record, error) {
	for i := range batch.Records {
		if err := checkKey(batch.Records[i].Key); err != nil {
			return nil, fmt.Errorf("record %d of the batch (build %s): %w", i, batch.Records[i].BuildID, err)
		}
	}
	wms := make(map[string][]byte, len(batch.Watermarks))
	for org, wm := range batch.Watermarks {
		if err := checkKey(org); err != nil {
			return nil, fmt.Errorf("watermark organization %q: %w", org, err)
		}
		v, err := json.Marshal(wm)
		if err != nil {
			return nil, fmt.Errorf("watermark of organization %s: %w", org, err)
		}
		wms[org] = v
	}
	for k := range batch.CommitsFirstSeen {
		if err := checkKey(k); err != nil {
			return nil, fmt.Errorf("commit key %q: %w", k, err)
		}
	}

	b.pendingMu.Lock()
	defer b.pendingMu.Unlock()
	var (
		added   []Record
		fresh   []string // keys this attempt stored: what a failed commit may have stored after all
		ignored int      // records older than the pruned keys
	)
	err := b.update(func(tx *bolt.Tx) error {
		added, fresh, ignored = added[:0], fresh[:0], 0
		recs, keys, meta := tx.Bucket(bucketRecords), tx.Bucket(bucketKeys), tx.Bucket(bucketMeta)
		// Sequence keys only ever grow: full pages instead of bbolt's default half-full split
		// roughly halve the file (bbolt's advice for append-only buckets).
		recs.FillPercent = 1.0
		pruned, _ := prunedBefore(meta) // checked at open
		var returned map[string]bool    // pending keys returned by this call
		for _, r := range batch.Records {
			if keys.Get([]byte(r.Key)) != nil {
				if b.pending[r.Key] && !returned[r.Key] {
					// Stored by a commit that reported failure, and never returned as new.
					if returned == nil {
						returned = map[string]bool{}
					}
					returned[r.Key] = true
					added = append(added, r)
				}
				continue
			}
			if r.FinishedAt.Before(pruned) {
				ignored++ // stored and pruned, or too old to tell: see Log.Compact
				continue
			}
			seq, err := recs.NextSequence()
			if err != nil {
				return err
			}
			k := binary.BigEndian.AppendUint64(nil, seq)
			if err := recs.Put(k, appendRecord(nil, &r)); err != nil {
				return err
			}
			if err := keys.Put([]byte(r.Key), keyValue(seq, r.FinishedAt.Unix())); err != nil {
				return err
			}
			added = append(added, r)
			fresh = append(fresh, r.Key)
		}
		if len(fresh) > 0 {
			n, _ := getUint(meta, keyAppended)
			if err := putUint(meta, keyAppended, n+uint64(len(fresh))); err != nil {
				return err
			}
		}
		// Records and watermarks commit together, so a watermark never gets ahead of records.
		w := tx.Bucket(bucketWatermarks)
		for org, v := range wms {
			if err := w.Put([]byte(org), v); err != nil {
				return err
			}
		}
		if len(wms) > 0 && meta.Get(keyWatermarks) == nil {
			if err := meta.Put(keyWatermarks, []byte{1}); err != nil {
				return err
			}
		}
		c := tx.Bucket(bucketCommits)
		for k, t := range batch.CommitsFirstSeen {
			if old := c.Get([]byte(k)); old != nil {
				var ot time.Time
				if ot.UnmarshalBinary(old) == nil && !t.Before(ot) {
					continue
				}
			}
			v, err := t.MarshalBinary()
			if err != nil {
				return fmt.Errorf("first-seen time of commit %q: %w", k, err)
			}
			if err := c.Put([]byte(k), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err == nil && b.commitHook != nil {
		err = b.commitHook()
	}
	if err != nil {
		// Only keys this attempt stored can have reached the disk unreported. A key stored
		// before is not pending: it was returned as new then (or is pending already).
		if len(fresh) > 0 && b.pending == nil {
			b.pending = map[string]bool{}
		}
		for _, k := range fresh {
			b.pending[k] = true
		}
		if errors.Is(err, ErrClosed) || errors.As(err, new(*CorruptError)) {
			return nil, err
		}
		return nil, b.writeError("store a batch of deployments in", err)
	}
	for _, r := range batch.Records {
		delete(b.pending, r.Key)
	}
	if ignored > 0 {
		level.Debug(b.logger).Log("msg", "Ignored records that finished before the pruned keys: counted before, or too old to tell", "records", ignored)
	}
	return added, nil
}

// checkKey rejects what bbolt cannot store as a key, before the transaction starts.
func checkKey(k string) error {
	switch {
	case k == "":
		return errors.New("empty key")
	case len(k) > bolt.MaxKeySize:
		return fmt.Errorf("key of %d bytes is longer than the %d bytes the store allows", len(k), bolt.MaxKeySize)
	}
	return nil
}

// Load implements Log.
func (b *Bolt) Load() (State, error) {
	st := State{Watermarks: map[string]Watermark{}, CommitsFirstSeen: map[string]time.Time{}}
	err := b.view(func(tx *bolt.Tx) error {
		m := tx.Bucket(bucketMeta)
		base, err := readBase(tx, true)
		if err != nil {
			return &CorruptError{Path: b.path, Err: err}
		}
		st.Base = base
		st.Compacted, _ = getUint(m, keyCompacted) // checked at open
		st.PrunedBefore, _ = prunedBefore(m)
		if err := tx.Bucket(bucketWatermarks).ForEach(func(k, v []byte) error {
			var wm Watermark
			if err := json.Unmarshal(v, &wm); err != nil {
				return &CorruptError{Path: b.path, Err: fmt.Errorf("watermark of organization %s: %w", k, err)}
			}
			st.Watermarks[string(k)] = wm
			return nil
		}); err != nil {
			return err
		}
		return tx.Bucket(bucketCommits).ForEach(func(k, v []byte) error {
			var t time.Time
			if err := t.UnmarshalBinary(v); err != nil {
				return &CorruptError{Path: b.path, Err: fmt.Errorf("first-seen time of commit %q: %w", k, err)}
			}
			st.CommitsFirstSeen[string(k)] = t
			return nil
		})
	})
	if err != nil {
		return State{}, err
	}
	return st, nil
}

// Replay implements Log. Records come back with their times in UTC. A record that cannot be
// decoded stops the replay with a *CorruptError naming its sequence number.
func (b *Bolt) Replay(fn func(Record) error) error {
	var (
		after []byte // sequence key of the last record read
		d     decoder
		chunk = make([]Record, 0, replayChunk)
	)
	for {
		chunk = chunk[:0]
		err := b.view(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketRecords).Cursor()
			var k, v []byte
			if after == nil {
				k, v = c.First()
			} else if k, v = c.Seek(after); bytes.Equal(k, after) {
				k, v = c.Next()
			}
			for ; k != nil && len(chunk) < replayChunk; k, v = c.Next() {
				chunk = append(chunk, Record{})
				if err := d.decodeRecord(v, &chunk[len(chunk)-1]); err != nil {
					return b.recordError(k, err)
				}
				after = append(after[:0], k...)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, r := range chunk {
			if err := fn(r); err != nil {
				return err
			}
		}
		if len(chunk) < replayChunk {
			b.releaseMapped()
			return nil
		}
	}
}

// releaseMapped drops the database pages a replay read from the process's resident memory: a
// replay touches the whole file (1,000,000 deployments: over 350 MiB), which the exporter does
// not read again until the next start. It runs inside a read transaction, during which bbolt
// never remaps the file.
func (b *Bolt) releaseMapped() {
	_ = b.view(func(tx *bolt.Tx) error {
		dropMapped(tx.DB().Info().Data, int(tx.Size()))
		return nil
	})
}

// recordError is the *CorruptError of the record at sequence key k.
func (b *Bolt) recordError(k []byte, err error) error {
	if len(k) == 8 {
		return &CorruptError{Path: b.path, Err: fmt.Errorf("record %x (sequence %d): %w", k, binary.BigEndian.Uint64(k), err)}
	}
	return &CorruptError{Path: b.path, Err: fmt.Errorf("record %x: %w", k, err)}
}

// Compact implements Log (see there for what it prunes and why that is safe). fold runs inside
// the write transaction; it must not call the store.
func (b *Bolt) Compact(cutoff time.Time, fold func(base []byte, old []Record) ([]byte, error)) error {
	var n, keysPruned, commitsPruned int
	var horizon time.Time
	err := b.update(func(tx *bolt.Tx) error {
		n, keysPruned, commitsPruned = 0, 0, 0
		var (
			d    decoder
			old  []Record
			seqs [][]byte
		)
		recs, meta := tx.Bucket(bucketRecords), tx.Bucket(bucketMeta)
		if err := recs.ForEach(func(k, v []byte) error {
			var r Record
			if err := d.decodeRecord(v, &r); err != nil {
				return b.recordError(k, err)
			}
			if r.FinishedAt.Before(cutoff) {
				old = append(old, r)
				seqs = append(seqs, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		if len(old) > 0 {
			prev, err := readBase(tx, true) // a fresh copy: fold may change it
			if err != nil {
				return &CorruptError{Path: b.path, Err: err}
			}
			base, err := fold(prev, old)
			if err != nil {
				return &foldError{err}
			}
			// bbolt keeps the values put until the commit: a copy fold cannot change meanwhile.
			if _, err := writeBase(tx, bytes.Clone(base)); err != nil {
				return err
			}
			for _, k := range seqs {
				if err := recs.Delete(k); err != nil {
					return err
				}
			}
			c, _ := getUint(meta, keyCompacted)
			if err := putUint(meta, keyCompacted, c+uint64(len(old))); err != nil {
				return err
			}
			n = len(old)
		}

		wms := map[string]Watermark{}
		if err := tx.Bucket(bucketWatermarks).ForEach(func(k, v []byte) error {
			var wm Watermark
			if err := json.Unmarshal(v, &wm); err != nil {
				return &CorruptError{Path: b.path, Err: fmt.Errorf("watermark of organization %s: %w", k, err)}
			}
			wms[string(k)] = wm
			return nil
		}); err != nil {
			return err
		}
		horizon = pruneHorizon(cutoff, wms)
		keys := tx.Bucket(bucketKeys)
		var doomed [][]byte
		if err := keys.ForEach(func(k, v []byte) error {
			_, finished, ok := parseKeyValue(v)
			if !ok {
				return &CorruptError{Path: b.path, Err: fmt.Errorf("key index entry %q: value %x is not a sequence and a finish time", k, v)}
			}
			if finished < horizon.Unix() {
				doomed = append(doomed, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range doomed {
			if err := keys.Delete(k); err != nil {
				return err
			}
		}
		keysPruned = len(doomed)
		doomed = doomed[:0]
		commits := tx.Bucket(bucketCommits)
		if err := commits.ForEach(func(k, v []byte) error {
			var t time.Time
			if err := t.UnmarshalBinary(v); err != nil {
				return &CorruptError{Path: b.path, Err: fmt.Errorf("first-seen time of commit %q: %w", k, err)}
			}
			if t.Before(cutoff) {
				doomed = append(doomed, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		for _, k := range doomed {
			if err := commits.Delete(k); err != nil {
				return err
			}
		}
		commitsPruned = len(doomed)
		if prev, _ := prunedBefore(meta); horizon.After(prev) && horizon.Unix() > 0 {
			return putUint(meta, keyPruned, uint64(horizon.Unix()))
		}
		return nil
	})
	var fe *foldError
	switch {
	case errors.As(err, &fe):
		return fmt.Errorf("compact deployment log %s: %w", b.path, fe.err)
	case err != nil && !errors.Is(err, ErrClosed) && !errors.As(err, new(*CorruptError)):
		return b.writeError("compact", err)
	case err != nil:
		return err
	}
	if n+keysPruned+commitsPruned > 0 {
		level.Info(b.logger).Log("msg", "Compacted deployment log", "path", b.path, "cutoff", cutoff.UTC().Format(time.RFC3339),
			"records", n, "keys_pruned", keysPruned, "key_horizon", horizon.Format(time.RFC3339), "commits_pruned", commitsPruned)
	}
	return nil
}

type foldError struct{ err error }

func (e *foldError) Error() string { return e.err.Error() }

// Backup writes a consistent copy of the database to w while the store stays in use (a read
// transaction; writers are not blocked). The copy is a complete deployments.db.
func (b *Bolt) Backup(w io.Writer) (int64, error) {
	var n int64
	err := b.view(func(tx *bolt.Tx) (err error) {
		n, err = tx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("back up deployment log %s: %w", b.path, err)
	}
	return n, nil
}

// Close implements Log. Closing twice is not an error.
func (b *Bolt) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.db == nil {
		return nil
	}
	// A read-only Bolt wrote no holder file: the one there, if any, names the writer.
	if !b.readOnly {
		if err := removeHolder(b.dir, b.holder); err != nil {
			level.Warn(b.logger).Log("msg", "Cannot remove the lock holder file", "path", b.dir, "err", err)
		}
	}
	err := b.db.Close()
	b.db = nil
	if err != nil {
		return fmt.Errorf("close deployment log %s: %w", b.path, err)
	}
	return nil
}

func (b *Bolt) view(fn func(*bolt.Tx) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return ErrClosed
	}
	return guard(b.path, func() error { return b.db.View(fn) })
}

func (b *Bolt) update(fn func(*bolt.Tx) error) error {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.db == nil {
		return ErrClosed
	}
	return guard(b.path, func() error { return b.db.Update(fn) })
}

// writeError wraps a failed write with what the operator can do about it.
func (b *Bolt) writeError(op string, err error) error {
	return fmt.Errorf("cannot %s deployment log %s: %w%s", op, b.path, err, hint(err))
}

// isFull says whether err is a full disk, quota or size limit.
func isFull(err error) bool {
	return errors.Is(err, berrors.ErrMaxSizeReached) || errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// openError names why bbolt could not open the log at path in directory dir: another holder
// (a lock timeout), a damaged file, or the error itself, followed by hint.
func openError(err error, dir, path, hint string) error {
	switch {
	case errors.Is(err, berrors.ErrTimeout):
		return &LockedError{Path: dir, Holder: readHolder(dir)}
	case errors.As(err, new(*CorruptError)):
		return err
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		return &CorruptError{Path: path, Err: err}
	}
	return fmt.Errorf("cannot open deployment log %s: %w%s", path, err, hint)
}

func hint(err error) string {
	switch {
	case isFull(err):
		return " (the disk or the size limit is full; free space, the exporter retries)"
	case errors.Is(err, syscall.EROFS), errors.Is(err, fs.ErrPermission):
		return " (the file system or directory is not writable by this user; make --storage.path writable or point it elsewhere)"
	}
	return ""
}

// guard turns a panic inside bbolt into a *CorruptError. bbolt trusts the bytes it maps, so a
// damaged page can make it panic, or fault on a page past the end of a truncated file; with
// SetPanicOnFault such a fault becomes a panic too instead of killing the process.
func guard(path string, fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if p := recover(); p != nil {
			err = &CorruptError{Path: path, Err: fmt.Errorf("reading the file failed: %v", p)}
		}
	}()
	return fn()
}
