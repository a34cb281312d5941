// Package testenv holds what the tests that run real processes share: free loopback addresses and
// the lookup of the Debian binaries (prometheus, prometheus-alertmanager) they start. A missing
// binary skips such a test on a developer's machine and fails it in CI, where a skip would look
// like a pass.
package testenv

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// InCI reports whether the tests run in CI (the CI environment variable is set and not "false").
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "false"
}

// FreeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// Binary finds the executable name (a name looked up in PATH, or a path). When it is missing, the
// test is skipped with the Debian package to install, or fails in CI.
func Binary(t testing.TB, name, debianPackage string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if InCI() {
		t.Fatalf("%s not found (%v); CI must install the Debian package %s (see .ci/run)", name, err, debianPackage)
	}
	t.Skipf("%s not found: install the Debian package %s to run this test", name, debianPackage)
	return ""
}

// LogBuffer is a log sink that goroutines may write to while a test reads it.
type LogBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LogBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// String returns everything written so far.
func (l *LogBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
