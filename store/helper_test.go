package store

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/go-kit/log"
)

// Some tests need the store opened by another process: a lock held by another PID, a process
// killed mid-write, a process running as an unprivileged user. They re-execute this test binary
// with helperEnv set; TestMain then runs the helper instead of the tests.
const (
	helperEnv    = "STORE_TEST_HELPER"
	helperDirEnv = "STORE_TEST_DIR"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode, os.Getenv(helperDirEnv)))
	}
	code := m.Run()
	removeBenchDirs()
	os.Exit(code)
}

func runHelper(mode, dir string) int {
	if at, ok := strings.CutPrefix(mode, "migrate-hang:"); ok {
		return helperMigrateHang(dir, at)
	}
	switch mode {
	case "hold":
		return helperHold(dir)
	case "ingest":
		return helperIngest(dir)
	case "open":
		return helperOpen(dir)
	}
	fmt.Fprintf(os.Stderr, "unknown %s=%q\n", helperEnv, mode)
	return 2
}

// helperHold opens the store, says so, and keeps it open until stdin closes.
func helperHold(dir string) int {
	b, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	fmt.Println("holding")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := b.Close(); err != nil {
		fmt.Println("error", err)
		return 1
	}
	return 0
}

// helperOpen opens the store once and prints the outcome.
func helperOpen(dir string) int {
	b, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger(), LockTimeout: 100 * time.Millisecond})
	if err != nil {
		fmt.Println("error:", err)
		return 0
	}
	_ = b.Close()
	fmt.Println("opened")
	return 0
}

// The ingest helper appends batches like the poller does: batch n holds ingestBatchSize
// records and moves the watermark to ingestTime(n). At start it resumes from the stored
// watermark, re-sending the last stored batch as the poller's overlap does. After each Append
// returns it prints "acked <n> <added>".
const ingestBatchSize = 5

func ingestTime(n int) time.Time { return t0.Add(time.Duration(n) * time.Second) }

func ingestBatch(n int) Batch {
	b := Batch{
		Watermarks:       map[string]Watermark{"acme": {FinishedFrom: ingestTime(n), BackfillDone: true}},
		CommitsFirstSeen: map[string]time.Time{CommitKey("svc", fmt.Sprint(n)): ingestTime(n)},
	}
	for j := range ingestBatchSize {
		r := rec(fmt.Sprintf("b%06d-%d", n, j), ingestTime(n), "production")
		b.Records = append(b.Records, r)
	}
	return b
}

func helperIngest(dir string) int {
	b, err := OpenBolt(dir, BoltOptions{Logger: log.NewNopLogger()})
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	st, err := b.Load()
	if err != nil {
		fmt.Println("error", err)
		return 1
	}
	next := 0
	if wm, ok := st.Watermarks["acme"]; ok {
		next = int(wm.FinishedFrom.Sub(t0) / time.Second) // re-send the last stored batch
	}
	fmt.Println("ready")
	deadline := time.Now().Add(10 * time.Second) // in case the parent never kills us
	for n := next; time.Now().Before(deadline); n++ {
		added, err := b.Append(ingestBatch(n))
		if err != nil {
			fmt.Println("error", err)
			return 1
		}
		fmt.Printf("acked %d %d\n", n, len(added)) // one write: a kill cannot split the line
	}
	return 0
}

// helperCmd returns a command that runs this test binary as the given helper.
func helperCmd(t *testing.T, exe, mode, dir string) *exec.Cmd {
	t.Helper()
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDirEnv+"="+dir)
	if os.Getenv("GORACE") == "" {
		cmd.Env = append(cmd.Env, "GORACE=atexit_sleep_ms=0") // the race detector's 1s pause at exit
	}
	cmd.Stderr = os.Stderr
	return cmd
}

// startHelper starts cmd and returns its stdout line by line. The pipe is ours, not exec's, so
// lines written before a kill are all read even after Wait.
func startHelper(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout = w
	err = cmd.Start()
	_ = w.Close()
	if err != nil {
		_ = r.Close()
		t.Fatal(err)
	}
	ch := make(chan string, 1<<16)
	go func() {
		defer close(ch)
		defer r.Close()
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			ch <- sc.Text()
		}
	}()
	return ch
}

// waitLine waits for a line starting with prefix and returns it.
func waitLine(t *testing.T, ch <-chan string, prefix string) string {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case l, ok := <-ch:
			if !ok {
				t.Fatalf("helper exited before printing %q", prefix)
			}
			if strings.HasPrefix(l, prefix) {
				return l
			}
			if strings.HasPrefix(l, "error") {
				t.Fatalf("helper: %s", l)
			}
		case <-timeout:
			t.Fatalf("helper did not print %q within 30s", prefix)
		}
	}
}
