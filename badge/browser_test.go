package badge

import (
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// TestBrowser shows badges in headless Chromium as a README does (<img>) and opens one on its
// own as a document: the images decode at their width, and the hostile version arrives as text
// in an SVG document with no script element.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
	}
	exec := "/usr/bin/chromium"
	if _, err := os.Stat(exec); err != nil {
		exec = testenv.Binary(t, "chromium", "chromium")
	}
	s := fixture()
	h := NewHandler(func() *snapshot.Snapshot { return s }, Options{MaxAge: 30 * time.Second, Now: func() time.Time { return now }})
	mux := http.NewServeMux()
	mux.Handle(Prefix, h)
	mux.HandleFunc("/readme", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!doctype html><title>readme</title>
<img id="prod" src="/badges/api/production.svg"><img id="staging" src="/badges/api/staging.svg"><img id="web" src="/badges/frontend/web/production.svg">`))
	})
	srv := newServer(t, mux)

	dir, err := os.MkdirTemp("", "badge-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for range 50 {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	var output testenv.LogBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exec), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(dir), chromedp.CombinedOutput(&output),
	)
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()
	fail := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v\nchromium's output:\n%s", what, err, output.String())
		}
	}

	fail("load the readme", chromedp.Do(bctx, chromedp.Navigate(srv+"/readme"), chromedp.WaitReady(chromedp.CSS("#web"))))
	widths, err := chromedp.Run(bctx, chromedp.Evaluate[[]int](`(async () => {
		const imgs = Array.from(document.images);
		await Promise.all(imgs.map(i => i.decode().catch(() => null)));
		return imgs.map(i => i.complete ? i.naturalWidth : -1);
	})()`, chromedp.EvalAwaitPromise))
	fail("image widths", err)
	if len(widths) != 3 {
		t.Fatalf("widths %v", widths)
	}
	for i, w := range widths {
		if w < 100 {
			t.Errorf("badge %d rendered %d px wide: not decoded as an image", i, w)
		}
	}

	fail("open a badge", chromedp.Do(bctx, chromedp.Navigate(srv+"/badges/api/staging.svg"), chromedp.WaitReady(chromedp.CSS("text"))))
	scripts, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.getElementsByTagName("script").length`))
	fail("scripts", err)
	text, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.documentElement.textContent`))
	fail("text", err)
	if scripts != 0 {
		t.Errorf("the badge document has %d script elements", scripts)
	}
	if !strings.Contains(text, `v2</text><script>&amp;"'`) {
		t.Errorf("the hostile version is not shown as text: %q", text)
	}
}
