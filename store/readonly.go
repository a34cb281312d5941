package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	bolt "go.etcd.io/bbolt"
)

// OpenBoltReadOnly opens the deployment log in dir for reading only, for a command that reads
// it while no exporter runs (report). It never creates, migrates or writes anything, not even
// the holder file. bbolt takes a shared flock for a read-only open, which waits while a writer
// (a running exporter) holds its exclusive one: after opts.LockTimeout (zero: one second) it
// fails with a *LockedError, whose holder the caller can name. A log in an older format, or
// with a migration under way, is refused: only a writer migrates it.
//
// Load and Replay work as on a writable Bolt; Append and Compact fail.
func OpenBoltReadOnly(dir string, opts BoltOptions) (*Bolt, error) {
	if dir == "" {
		return nil, errors.New("storage path is empty")
	}
	logger, timeout := opts.defaults()
	path := filepath.Join(dir, DBFileName)
	fi, err := os.Stat(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("no deployment log at %s: is --storage.path the exporter's?", path)
	case err != nil:
		return nil, fmt.Errorf("cannot read deployment log %s: %w", path, err)
	}
	var db *bolt.DB
	err = guard(path, func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout:  timeout,
			ReadOnly: true,
			OpenFile: openExisting,
		})
		return err
	})
	if err != nil {
		return nil, openError(err, dir, path, "")
	}
	b := &Bolt{logger: logger, dir: dir, path: path, db: db, readOnly: true}
	err = guard(path, func() error {
		return db.View(func(tx *bolt.Tx) error {
			if tx.Size() > fi.Size() {
				return &CorruptError{Path: path, Err: fmt.Errorf("file is truncated: it has %d bytes, its metadata needs %d", fi.Size(), tx.Size())}
			}
			m := tx.Bucket(bucketMeta)
			if m == nil {
				return &CorruptError{Path: path, Err: errors.New("not a deployment log: it has no format marker")}
			}
			f := m.Get(keyFormat)
			if err := knownFormat(f, storeFormat); err != nil {
				return &CorruptError{Path: path, Err: err}
			}
			switch {
			case f[0] < storeFormat || m.Get(keyMigration) != nil || m.Get(keyAppended) == nil:
				return fmt.Errorf("deployment log %s is in an older format or half migrated: start this version's exporter on it once (serve migrates it), then read it", path)
			}
			for _, name := range allBuckets {
				if tx.Bucket(name) == nil {
					return &CorruptError{Path: path, Err: fmt.Errorf("its %s bucket is missing", name)}
				}
			}
			if err := checkExpected(tx, storeFormat); err != nil {
				return &CorruptError{Path: path, Err: err}
			}
			return nil
		})
	})
	if err != nil {
		_ = b.Close()
		return nil, err
	}
	return b, nil
}
