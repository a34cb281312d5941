package store

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// bbolt locks the database file with flock(2), which keeps a second writer out but cannot say
// who holds the lock. So the process that got the lock also writes this small file naming
// itself; a process refused the lock reads it to tell the operator whom to stop. The file is
// advice only: a stale one (left by a crash) is overwritten by the next holder, and the flock,
// which the kernel drops when its holder dies, remains the lock.
const holderFileName = "deployments.lock"

// LockHolder is the process that holds a storage path.
type LockHolder struct {
	PID      int       `json:"pid"`
	Hostname string    `json:"hostname"`
	Started  time.Time `json:"started"` // when it opened the store
}

func (h LockHolder) String() string {
	return fmt.Sprintf("pid %d on host %s, holding it since %s", h.PID, h.Hostname, h.Started.UTC().Format(time.RFC3339))
}

func currentHolder(now time.Time) LockHolder {
	host, err := os.Hostname()
	if err != nil {
		host = "unknown"
	}
	return LockHolder{PID: os.Getpid(), Hostname: host, Started: now.UTC().Truncate(time.Second)}
}

// writeHolder replaces the holder file atomically, so a reader sees the old or the new one.
func writeHolder(dir string, h LockHolder) error {
	data, err := json.Marshal(h)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, holderFileName+".tmp*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	if _, err = f.Write(append(data, '\n')); err == nil {
		err = f.Close()
	} else {
		_ = f.Close()
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, holderFileName))
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// readHolder returns the recorded holder, or nil when there is none or it cannot be read (for
// example when the holder has the lock but has not written the file yet).
func readHolder(dir string) *LockHolder {
	data, err := os.ReadFile(filepath.Join(dir, holderFileName))
	if err != nil {
		return nil
	}
	var h LockHolder
	if json.Unmarshal(data, &h) != nil || h.PID == 0 {
		return nil
	}
	return &h
}

// removeHolder removes the holder file if it still names h.
func removeHolder(dir string, h LockHolder) error {
	cur := readHolder(dir)
	if cur == nil || cur.PID != h.PID || cur.Hostname != h.Hostname || !cur.Started.Equal(h.Started) {
		return nil
	}
	return os.Remove(filepath.Join(dir, holderFileName))
}
