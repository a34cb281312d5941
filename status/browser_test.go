package status

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/browsertest"
)

// TestBrowser loads the page in a real headless browser and reads what it rendered: the proof
// that the page works without script and that the escaping holds in a DOM, not only in bytes.
func TestBrowser(t *testing.T) {
	// With a webhook receiver, so that its section is in the layout the checks below read.
	srv := httptest.NewServer(fixtureHandler(hookedSource{newFixtureSource(), &Webhooks{LastEvent: fixtureNow.Add(-time.Minute),
		Counts: []WebhookCount{{"build.finished", "accepted", 12}, {"other", "rejected_auth", 3}}}}))
	defer srv.Close()

	br := browsertest.Start(t)
	br.Check("load /status", chromedp.Do(br.Ctx, chromedp.Navigate(srv.URL+"/status"), chromedp.WaitReady(chromedp.CSS("footer"))))
	title, err := chromedp.Run(br.Ctx, chromedp.Title())
	br.Check("title", err)
	text, err := chromedp.Run(br.Ctx, chromedp.Text(chromedp.CSS("body")))
	br.Check("text", err)
	links, err := chromedp.Run(br.Ctx, chromedp.Evaluate[[]string](`Array.from(document.querySelectorAll("a[href]"), a => a.href)`))
	br.Check("links", err)
	scripts, err := chromedp.Run(br.Ctx, chromedp.Evaluate[int](`document.querySelectorAll("script").length`))
	br.Check("scripts", err)

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
