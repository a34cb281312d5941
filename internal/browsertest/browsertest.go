// Package browsertest starts Debian's headless Chromium for the tests that read what a page
// really renders (the status page, badges, the HTML report), with the flags this machine's closed
// network needs, a user data directory of its own and chromium's output kept for failures.
package browsertest

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

// Browser is a running headless Chromium; Ctx is its chromedp context.
type Browser struct {
	Ctx    context.Context
	t      *testing.T
	output *testenv.LogBuffer
}

// Start starts Chromium for t, or skips t (fails it in CI) when there is none; extra adds
// allocator options (a window size, say). The browser ends with the test, and gives up after
// 90 seconds.
func Start(t *testing.T, extra ...chromedp.ExecAllocatorOption) *Browser {
	t.Helper()
	exec := "/usr/bin/chromium"
	if _, err := os.Stat(exec); err != nil {
		exec = testenv.Binary(t, "chromium", "chromium")
	}
	b := &Browser{t: t, output: &testenv.LogBuffer{}}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	opts := append([]chromedp.ExecAllocatorOption{
		chromedp.ExecPath(exec),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		// Without these, chromium's background connections are refused by the closed network.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(userDataDir(t)),
		chromedp.CombinedOutput(b.output),
	}, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	t.Cleanup(func() {
		cancelBrowser()
		cancelAlloc() // waits for the browser to exit
		cancel()
	})
	b.Ctx = bctx
	return b
}

// Check fails the test when err is set, with chromium's output.
func (b *Browser) Check(what string, err error) {
	b.t.Helper()
	if err != nil {
		b.t.Fatalf("%s: %v\nchromium's output:\n%s", what, err, b.output.String())
	}
}

// userDataDir is a new profile directory, removed after the test once chromium let go of it.
func userDataDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if err = os.RemoveAll(dir); err == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("removing %s: %v", dir, err)
	})
	return dir
}
