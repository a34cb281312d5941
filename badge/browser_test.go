package badge

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/browsertest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// TestBrowser shows badges in headless Chromium as a README does (<img>) and opens one on its
// own as a document: the images decode at their width, and the hostile version arrives as text
// in an SVG document with no script element.
func TestBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium")
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

	br := browsertest.Start(t)

	br.Check("load the readme", chromedp.Do(br.Ctx, chromedp.Navigate(srv+"/readme"), chromedp.WaitReady(chromedp.CSS("#web"))))
	widths, err := chromedp.Run(br.Ctx, chromedp.Evaluate[[]int](`(async () => {
		const imgs = Array.from(document.images);
		await Promise.all(imgs.map(i => i.decode().catch(() => null)));
		return imgs.map(i => i.complete ? i.naturalWidth : -1);
	})()`, chromedp.EvalAwaitPromise))
	br.Check("image widths", err)
	if len(widths) != 3 {
		t.Fatalf("widths %v", widths)
	}
	for i, w := range widths {
		if w < 100 {
			t.Errorf("badge %d rendered %d px wide: not decoded as an image", i, w)
		}
	}

	br.Check("open a badge", chromedp.Do(br.Ctx, chromedp.Navigate(srv+"/badges/api/staging.svg"), chromedp.WaitReady(chromedp.CSS("text"))))
	scripts, err := chromedp.Run(br.Ctx, chromedp.Evaluate[int](`document.getElementsByTagName("script").length`))
	br.Check("scripts", err)
	text, err := chromedp.Run(br.Ctx, chromedp.Evaluate[string](`document.documentElement.textContent`))
	br.Check("text", err)
	if scripts != 0 {
		t.Errorf("the badge document has %d script elements", scripts)
	}
	if !strings.Contains(text, `v2</text><script>&amp;"'`) {
		t.Errorf("the hostile version is not shown as text: %q", text)
	}
}
