package store

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
)

// TestReadOnlyWhileHeld: a read-only open of a log another process holds gives up after its
// timeout with a *LockedError naming the holder, and leaves the holder's record alone; once the
// holder is gone, it reads every record, and refuses to write.
func TestReadOnlyWhileHeld(t *testing.T) {
	dir := t.TempDir()
	b, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	want := []Record{rec("b1", t0, "production"), rec("b2", t0.Add(time.Minute), "staging")}
	if _, err := b.Append(Batch{Records: want}); err != nil {
		t.Fatal(err)
	}
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}

	cmd := helperCmd(t, "", "hold", dir)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out := startHelper(t, cmd)
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	waitLine(t, out, "holding")

	start := time.Now()
	_, err = OpenBoltReadOnly(dir, BoltOptions{LockTimeout: 200 * time.Millisecond})
	var le *LockedError
	if !errors.As(err, &le) {
		t.Fatalf("OpenBoltReadOnly on a held path = %v, want a *LockedError", err)
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("waited %v for the lock, want about the 200ms timeout", waited)
	}
	if le.Holder == nil || le.Holder.PID != cmd.Process.Pid || !strings.Contains(err.Error(), "pid "+strconv.Itoa(cmd.Process.Pid)) {
		t.Errorf("holder %+v, message %q: want pid %d", le.Holder, err, cmd.Process.Pid)
	}
	if h := readHolder(dir); h == nil || h.PID != cmd.Process.Pid {
		t.Errorf("holder file after a refused read-only open = %+v", h)
	}
	_ = stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("holder exited with %v", err)
	}

	ro, err := OpenBoltReadOnly(dir, BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var got []Record
	if err := ro.Replay(func(r Record) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Key != want[0].Key || got[1].Key != want[1].Key {
		t.Errorf("replayed %+v", got)
	}
	if _, err := ro.Append(Batch{Records: []Record{rec("b3", t0, "production")}}); err == nil {
		t.Error("a read-only log accepted an Append")
	}
	// Two readers at once: shared locks.
	ro2, err := OpenBoltReadOnly(dir, BoltOptions{LockTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatalf("a second reader: %v", err)
	}
	_ = ro2.Close()
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, holderFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("holder file after the readers: %v", err)
	}
}

func TestReadOnlyRefuses(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenBoltReadOnly(dir, BoltOptions{}); err == nil || !strings.Contains(err.Error(), "no deployment log") {
		t.Errorf("an empty directory: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, DBFileName)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the read-only open created a file: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, DBFileName), []byte("not a database"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenBoltReadOnly(dir, BoltOptions{}); !errors.As(err, new(*CorruptError)) {
		t.Errorf("a damaged file: %v, want a *CorruptError", err)
	}
}
