//go:build unix

package backstage_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
)

// loadWithin loads paths, failing the test instead of hanging when Load does not return in time.
func loadWithin(t *testing.T, d time.Duration, paths ...string) (backstage.Result, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	type out struct {
		res backstage.Result
		err error
	}
	ch := make(chan out, 1)
	go func() {
		res, err := backstage.NewFileSource(paths, log.NewNopLogger()).Load(ctx)
		ch <- out{res, err}
	}()
	select {
	case o := <-ch:
		return o.res, o.err
	case <-time.After(d + 5*time.Second):
		t.Fatalf("Load(%v) did not return within %v", paths, d+5*time.Second)
		return backstage.Result{}, nil
	}
}

// TestFileSourceNonRegularFiles: a FIFO named z.yaml in a walked directory, a symlink to it, a
// Location whose targets are /dev/stdin and /dev/null, and a file larger than the cap are each an
// unreadable_file problem; none of them blocks the load (no writer ever opens the FIFO) and the
// good file is read.
func TestFileSourceNonRegularFiles(t *testing.T) {
	dir := t.TempDir()
	writeComponent(t, filepath.Join(dir, "a.yaml"), "good", "acme/good")
	fifo := filepath.Join(dir, "z.yaml")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(fifo, filepath.Join(dir, "link-to-fifo.yaml")); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "big.yaml")
	f, err := os.Create(big)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(backstage.MaxFileSize + 1); err != nil { // sparse: costs no disk
		t.Fatal(err)
	}
	f.Close()
	locations := filepath.Join(t.TempDir(), "locations.yaml")
	writeFile(t, locations, `apiVersion: backstage.io/v1alpha1
kind: Location
metadata:
  name: devices
spec:
  targets: [/dev/stdin, /dev/null]
`)

	res, err := loadWithin(t, 10*time.Second, dir, locations)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"good=acme/good"}, labels(res.Components)); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	want := []string{
		big + " unreadable_file",
		filepath.Join(dir, "link-to-fifo.yaml") + " unreadable_file",
		fifo + " unreadable_file",
		"location:default/devices unreadable_file", // /dev/stdin
		"location:default/devices unreadable_file", // /dev/null
	}
	if diff := cmp.Diff(want, reasons(res.Problems)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	for _, p := range res.Problems {
		text := "not a regular file"
		if p.Source == big {
			text = "larger than 16 MiB"
		}
		if !strings.Contains(p.Message, text) {
			t.Errorf("problem %q does not say %q", p.Message, text)
		}
	}
}

// TestFileSourceStdinTarget: --catalog.file=/dev/stdin (whatever stdin is: a terminal, a pipe,
// /dev/null) fails at once instead of waiting for input.
func TestFileSourceStdinTarget(t *testing.T) {
	if fi, err := os.Stat("/dev/stdin"); err != nil || fi.Mode().IsRegular() {
		t.Skipf("/dev/stdin is a regular file or missing here (%v)", err)
	}
	res, err := loadWithin(t, 10*time.Second, "/dev/stdin")
	if err == nil {
		t.Fatalf("Load of /dev/stdin succeeded: %+v", res)
	}
	if len(res.Problems) != 1 || res.Problems[0].Reason != backstage.ReasonUnreadableFile || !strings.Contains(res.Problems[0].Message, "not a regular file") {
		t.Errorf("problems = %v, want one unreadable_file saying it is not a regular file", res.Problems)
	}
}
