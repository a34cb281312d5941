package store

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
// it. Format 2 keys failed outcomes by attempt (AttemptKey); format 1 keyed every outcome by
// finish time.
const storeFormat = 2

var (
	bucketMeta       = []byte("meta")       // "format" → storeFormat; "base" → compacted summary
	bucketRecords    = []byte("records")    // 8-byte big-endian sequence → encoded Record
	bucketKeys       = []byte("keys")       // Record.Key → sequence; kept after compaction
	bucketWatermarks = []byte("watermarks") // organization → JSON Watermark
	bucketCommits    = []byte("commits")    // CommitKey → time.Time.MarshalBinary

	keyFormat = []byte("format")
	keyBase   = []byte("base")
)

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

	// migrateHook, set by tests, runs halfway through a format migration, inside its
	// transaction; an error aborts the migration, as a crash there would.
	migrateHook func() error
}

// Bolt is the durable Log: a bbolt database under the storage path. Every Append is one
// transaction, fsynced before it returns. It is safe for concurrent use.
type Bolt struct {
	logger log.Logger
	dir    string
	path   string // the database file
	holder LockHolder

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
	return fmt.Sprintf("deployment log %s is corrupt or unreadable: %v. Move it aside (mv %s %s.corrupt) and start again: "+
		"the exporter creates a new log and backfills --history.backfill of builds from Buildkite; "+
		"deployments older than that window are no longer counted (see store/README.md)", e.Path, e.Err, e.Path, e.Path)
}

func (e *CorruptError) Unwrap() error { return e.Err }

// OpenBolt opens or creates the deployment log in the directory dir (the --storage.path),
// creating the directory if needed. It fails with a *LockedError when another process has it
// open, and with a *CorruptError when the file cannot be read.
func OpenBolt(dir string, opts BoltOptions) (*Bolt, error) {
	if dir == "" {
		return nil, errors.New("storage path is empty")
	}
	logger := opts.Logger
	if logger == nil {
		logger = log.NewNopLogger()
	}
	timeout := opts.LockTimeout
	if timeout <= 0 {
		timeout = time.Second
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("cannot create storage path %s: %w%s", dir, err, hint(err))
	}
	if fi, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("cannot use storage path %s: %w", dir, err)
	} else if !fi.IsDir() {
		return nil, fmt.Errorf("storage path %s is not a directory", dir)
	}
	path := filepath.Join(dir, DBFileName)

	var db *bolt.DB
	err := guard(path, func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:      timeout,
			FreelistType: bolt.FreelistMapType, // compaction frees many pages; the map scales
			MaxSize:      opts.MaxSize,
			NoSync:       false, // explicit: every commit is fsynced before Append returns
		})
		return err
	})
	switch {
	case err == nil:
	case errors.Is(err, berrors.ErrTimeout):
		return nil, &LockedError{Path: dir, Holder: readHolder(dir)}
	case errors.As(err, new(*CorruptError)):
		return nil, err
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum),
		errors.Is(err, berrors.ErrVersionMismatch), errors.Is(err, berrors.ErrInvalidMapping):
		return nil, &CorruptError{Path: path, Err: err}
	default:
		return nil, fmt.Errorf("cannot open deployment log %s: %w%s", path, err, hint(err))
	}

	b := &Bolt{logger: logger, dir: dir, path: path, db: db, holder: currentHolder(time.Now())}
	if err := writeHolder(dir, b.holder); err != nil {
		// The flock is the lock; the file only names its holder, so this is not fatal.
		level.Warn(logger).Log("msg", "Cannot record this process as the holder of the storage path", "path", dir, "err", err)
	}
	if err := b.init(opts.migrateHook); err != nil {
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

// init checks what a damaged file can hide from bbolt.Open, creates the buckets and migrates
// an older format.
func (b *Bolt) init(migrateHook func() error) error {
	fi, err := os.Stat(b.path)
	if err != nil {
		return fmt.Errorf("cannot stat deployment log %s: %w", b.path, err)
	}
	allBuckets := [][]byte{bucketMeta, bucketRecords, bucketKeys, bucketWatermarks, bucketCommits}
	var format byte // of the file as found; 0 for a new one
	err = guard(b.path, func() error {
		complete := true
		// bbolt maps the file and trusts its meta page; if the file is shorter than the meta
		// says, touching the missing pages would kill the process (SIGBUS), so check first.
		if err := b.db.View(func(tx *bolt.Tx) error {
			if tx.Size() > fi.Size() {
				return &CorruptError{Path: b.path, Err: fmt.Errorf("file is truncated: it has %d bytes, its metadata needs %d", fi.Size(), tx.Size())}
			}
			if m := tx.Bucket(bucketMeta); m != nil {
				f := m.Get(keyFormat)
				if len(f) != 1 || f[0] > storeFormat || f[0] == 0 {
					return &CorruptError{Path: b.path, Err: fmt.Errorf("unknown store format %v (this binary reads format %d; was it written by a newer version?)", f, storeFormat)}
				}
				format = f[0]
				for _, name := range allBuckets {
					complete = complete && tx.Bucket(name) != nil
				}
				return nil
			}
			complete = false
			// No format marker: a new file, or another program's bbolt database, which must
			// not be written into.
			return tx.ForEach(func(name []byte, _ *bolt.Bucket) error {
				return &CorruptError{Path: b.path, Err: fmt.Errorf("not a deployment log: it has a bucket %q and no format marker", name)}
			})
		}); err != nil {
			return err
		}
		if complete {
			return nil // nothing to write here; only a migration changes an existing store
		}
		return b.db.Update(func(tx *bolt.Tx) error {
			for _, name := range allBuckets {
				if _, err := tx.CreateBucketIfNotExists(name); err != nil {
					return &CorruptError{Path: b.path, Err: fmt.Errorf("bucket %s: %w", name, err)}
				}
			}
			m := tx.Bucket(bucketMeta)
			if m.Get(keyFormat) == nil {
				return m.Put(keyFormat, []byte{storeFormat})
			}
			return nil
		})
	})
	if err != nil && !errors.As(err, new(*CorruptError)) {
		return b.writeError("initialise", err)
	}
	if err == nil && format != 0 && format < storeFormat {
		// Format 1 is the only older one. A new file got storeFormat above.
		err = guard(b.path, func() error { return b.migrateFormat1(migrateHook) })
	}
	return err
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
	var added []Record
	err := b.update(func(tx *bolt.Tx) error {
		added = added[:0]
		recs, keys := tx.Bucket(bucketRecords), tx.Bucket(bucketKeys)
		// Sequence keys only ever grow: full pages instead of bbolt's default half-full split
		// roughly halve the file (bbolt's advice for append-only buckets).
		recs.FillPercent = 1.0
		for _, r := range batch.Records {
			if keys.Get([]byte(r.Key)) != nil {
				if b.pending[r.Key] {
					added = append(added, r) // stored by a commit that reported failure
				}
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
			if err := keys.Put([]byte(r.Key), k); err != nil {
				return err
			}
			added = append(added, r)
		}
		// Records and watermarks commit together, so a watermark never gets ahead of records.
		w := tx.Bucket(bucketWatermarks)
		for org, v := range wms {
			if err := w.Put([]byte(org), v); err != nil {
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
		if b.pending == nil {
			b.pending = map[string]bool{}
		}
		for _, r := range batch.Records {
			b.pending[r.Key] = true
		}
		if errors.Is(err, ErrClosed) || errors.As(err, new(*CorruptError)) {
			return nil, err
		}
		return nil, b.writeError("store a batch of deployments in", err)
	}
	for _, r := range batch.Records {
		delete(b.pending, r.Key)
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
		if v := tx.Bucket(bucketMeta).Get(keyBase); v != nil {
			st.Base = bytes.Clone(v)
		}
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
					return &CorruptError{Path: b.path, Err: fmt.Errorf("record %x: %w", k, err)}
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

// Compact implements Log. fold runs inside the write transaction; it must not call the store.
// Keys of compacted records stay in the key index, so a re-read of an old build is still
// recognised as stored and never counted twice.
func (b *Bolt) Compact(cutoff time.Time, fold func(base []byte, old []Record) ([]byte, error)) error {
	var n int
	err := b.update(func(tx *bolt.Tx) error {
		n = 0
		var (
			d    decoder
			old  []Record
			seqs [][]byte
		)
		recs := tx.Bucket(bucketRecords)
		if err := recs.ForEach(func(k, v []byte) error {
			var r Record
			if err := d.decodeRecord(v, &r); err != nil {
				return &CorruptError{Path: b.path, Err: fmt.Errorf("record %x: %w", k, err)}
			}
			if r.FinishedAt.Before(cutoff) {
				old = append(old, r)
				seqs = append(seqs, bytes.Clone(k))
			}
			return nil
		}); err != nil {
			return err
		}
		if len(old) == 0 {
			return nil
		}
		meta := tx.Bucket(bucketMeta)
		base, err := fold(bytes.Clone(meta.Get(keyBase)), old)
		if err != nil {
			return &foldError{err}
		}
		if base == nil {
			err = meta.Delete(keyBase)
		} else {
			err = meta.Put(keyBase, base)
		}
		if err != nil {
			return err
		}
		for _, k := range seqs {
			if err := recs.Delete(k); err != nil {
				return err
			}
		}
		n = len(old)
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
	if n > 0 {
		level.Info(b.logger).Log("msg", "Compacted deployment log", "path", b.path, "cutoff", cutoff.UTC().Format(time.RFC3339), "records", n)
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
	if err := removeHolder(b.dir, b.holder); err != nil {
		level.Warn(b.logger).Log("msg", "Cannot remove the lock holder file", "path", b.dir, "err", err)
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

func hint(err error) string {
	switch {
	case errors.Is(err, berrors.ErrMaxSizeReached), errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
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
