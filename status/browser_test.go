package status

import (
	"context"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

// chromium returns Debian's chromium, or skips the test (fails it in CI) when it is missing.
func chromium(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	return testenv.Binary(t, "chromium", "chromium")
}

// TestBrowser loads the page in a real headless browser and reads what it rendered: the proof
// that the page works without script and that the escaping holds in a DOM, not only in bytes.
func TestBrowser(t *testing.T) {
	exec := chromium(t)
	// With a webhook receiver, so that its section is in the layout the checks below read.
	srv := httptest.NewServer(fixtureHandler(hookedSource{newFixtureSource(), &Webhooks{LastEvent: fixtureNow.Add(-time.Minute),
		Counts: []WebhookCount{{"build.finished", "accepted", 12}, {"other", "rejected_auth", 3}}}}))
	defer srv.Close()

	var output testenv.LogBuffer
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(exec),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(userDataDir(t)),
		chromedp.CombinedOutput(&output),
	)
	defer cancelAlloc() // waits for the browser to exit
	bctx, cancelBrowser := chromedp.NewContext(actx)
	defer cancelBrowser()

	fail := func(what string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v\nchromium's output:\n%s", what, err, output.String())
		}
	}
	fail("load /status", chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/status"), chromedp.WaitReady(chromedp.CSS("footer"))))
	title, err := chromedp.Run(bctx, chromedp.Title())
	fail("title", err)
	text, err := chromedp.Run(bctx, chromedp.Text(chromedp.CSS("body")))
	fail("text", err)
	links, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("a[href]"), a => a.href)`))
	fail("links", err)
	scripts, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll("script").length`))
	fail("scripts", err)

	if !strings.Contains(title, "buildkite_deployments_exporter") {
		t.Errorf("title %q", title)
	}
	for _, want := range []string{
		"api", "frontend/web", "shop", "worker", "newsvc",
		shopProblem, workerProblem, brokenYAML, brokenYAMLText,
		"v1.4.2", "failing", "globex is backfilling",
		// hostile values arrive as text
		hostileLabel, hostileVersion,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the rendered page lacks %q", want)
		}
	}
	if scripts != 0 {
		t.Errorf("the DOM has %d script elements", scripts)
	}
	found := false
	for _, l := range links {
		if strings.HasPrefix(strings.ToLower(l), "javascript:") {
			t.Errorf("link %q", l)
		}
		found = found || l == "https://buildkite.com/acme/api-deploy-prod/builds/142"
	}
	if !found {
		t.Errorf("no link to api's production build among %q", links)
	}
}

// userDataDir is a fresh profile directory. Chromium's child processes may still write to it
// for a moment after the browser exits, so its removal retries rather than fail the test.
func userDataDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "status-chromium-")
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
