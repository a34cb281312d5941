package store

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
	bolt "go.etcd.io/bbolt"
)

// rssFileKiB is this process's resident file-backed memory (RssFile in /proc/self/status).
func rssFileKiB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Skipf("no /proc/self/status: %v", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Skip("no RssFile in /proc/self/status")
	return 0
}

// TestReplayReleasesMappedPages: a replay reads the whole file through bbolt's memory map; once
// it is done, those pages must not stay in the process's resident memory.
func TestReplayReleasesMappedPages(t *testing.T) {
	b, err := OpenBolt(t.TempDir(), BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for batch := range 40 {
		var recs []Record
		for i := range 1000 {
			recs = append(recs, rec(fmt.Sprintf("b-%d-%d", batch, i), start.Add(time.Duration(batch*1000+i)*time.Second), "production"))
		}
		if _, err := b.Append(Batch{Records: recs}); err != nil {
			t.Fatal(err)
		}
	}
	fi, err := os.Stat(b.Path())
	if err != nil {
		t.Fatal(err)
	}
	fileKiB := int(fi.Size() / 1024)

	// Touch every page as a replay does, without the release, to see them resident.
	if err := b.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketRecords).ForEach(func(_, v []byte) error {
			_ = v[len(v)-1] // read the page
			return nil
		})
	}); err != nil {
		t.Fatal(err)
	}
	touched := rssFileKiB(t)
	n := 0
	if err := b.Replay(func(Record) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	released := rssFileKiB(t)
	t.Logf("file %d KiB; resident file-backed memory %d KiB after reading it, %d KiB after the replay released it (%d records)", fileKiB, touched, released, n)
	if n != 40000 {
		t.Fatalf("replayed %d records, want 40000", n)
	}
	if touched-released < fileKiB/2 {
		t.Errorf("the replay left the file's pages resident: %d KiB before the release, %d KiB after, file %d KiB", touched, released, fileKiB)
	}
}
