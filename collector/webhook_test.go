package collector

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/webhook"
)

// Webhook scenarios: the fake API sends its webhooks to the receiver (package webhook), which
// hands builds to the collector; everything runs in a synctest bubble, the deliveries through an
// in-process transport so that fake time covers them.

const hookToken = "hook-secret"

func withWebhooks() harnessOpt { return func(o *Options) { o.WebhookQueue = 64 } }

// handlerTransport serves requests with a handler in the calling goroutine.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// hooked is a harness whose fake sends webhooks to a receiver feeding its collector.
type hooked struct {
	*harness
	recv   *webhook.Handler
	client *http.Client
}

func startHooked(t *testing.T, f *buildkitetest.Fake, comps []backstage.Component, signed bool, opts ...harnessOpt) *hooked {
	t.Helper()
	h := start(t, f, comps, append(opts, withWebhooks())...)
	recv, err := webhook.New(webhook.Options{Token: []byte(hookToken), Sink: h.c})
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: handlerTransport{recv}}
	f.SetWebhook(&buildkitetest.Webhook{URL: "http://exporter.test" + webhook.Path, Token: hookToken, Signed: signed, Client: client})
	return &hooked{harness: h, recv: recv, client: client}
}

// settle waits a second of fake time: longer than the coalescing window, shorter than a poll.
func settle() {
	time.Sleep(time.Second)
	waitIdle()
}

func running(comp, env string) string {
	return series("buildkite_deployments_running", "component", comp, "environment", env)
}

func awaiting(comp, env string) string {
	return series("buildkite_deployments_awaiting_approval", "component", comp, "environment", env)
}

func openBuild(started time.Time) buildkite.Build {
	return buildkite.Build{State: buildkite.StateRunning, Commit: sha(int(started.Unix())), Branch: "main",
		MetaData:  map[string]string{"environment": "production"},
		CreatedAt: ts(started.Add(-time.Minute)), ScheduledAt: ts(started.Add(-time.Minute)), StartedAt: ts(started)}
}

func (h *hooked) count(event, result string) uint64 {
	for _, c := range h.recv.Status().Counts {
		if c.Event == event && c.Result == result {
			return c.Count
		}
	}
	return 0
}

// TestWebhookFinishCountedAtOnceAndOnce: a build.finished updates the gauges and the counters
// within a second without any API request, signed or token-authenticated; the polls that list
// the same build afterwards count nothing twice.
func TestWebhookFinishCountedAtOnceAndOnce(t *testing.T) {
	for _, signed := range []bool{false, true} {
		name := "token"
		if signed {
			name = "signed"
		}
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				f := newFake()
				b := f.AddBuild(testOrg, "shop", openBuild(time.Now().Add(-5*time.Minute)))
				h := startHooked(t, f, []backstage.Component{component("shop", "shop")}, signed)
				expect(t, h.metrics(), map[string]float64{running("shop", "production"): 1, deployments("shop", "production", "shop", "passed"): 0})
				before := len(f.Requests())
				if err := f.FinishBuild(testOrg, "shop", b.Number, "passed", time.Now()); err != nil {
					t.Fatal(err)
				}
				settle()
				expect(t, h.metrics(), map[string]float64{running("shop", "production"): 0, deployments("shop", "production", "shop", "passed"): 1})
				if n := len(f.Requests()) - before; n != 0 {
					t.Errorf("%d API requests for a passed build's webhook, want none", n)
				}
				if got := h.count("build.finished", webhook.ResultAccepted); got != 1 {
					t.Errorf("accepted build.finished = %d, want 1", got)
				}
				for range 3 { // the overlap lists it again
					h.next()
				}
				expect(t, h.metrics(), map[string]float64{running("shop", "production"): 0, deployments("shop", "production", "shop", "passed"): 1})
			})
		})
	}
}

// TestWebhookGaugesWithoutPoll: a build the last poll did not see starts running, then blocks
// on an approval: the gauges follow its deliveries.
func TestWebhookGaugesWithoutPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.AddPipeline(testOrg, buildkite.Pipeline{Slug: "shop"})
		h := startHooked(t, f, []backstage.Component{component("shop", "shop")}, true)
		before := len(f.Requests())
		b := f.AddBuild(testOrg, "shop", openBuild(time.Now()))
		settle()
		expect(t, h.metrics(), map[string]float64{running("shop", "production"): 1, awaiting("shop", "production"): 0})
		if err := f.UpdateBuild(testOrg, "shop", b.Number, func(b *buildkite.Build) {
			b.State, b.Blocked, b.FinishedAt = buildkite.StatePassed, true, ts(time.Now())
		}); err != nil {
			t.Fatal(err)
		}
		settle()
		expect(t, h.metrics(), map[string]float64{running("shop", "production"): 0, awaiting("shop", "production"): 1, deployments("shop", "production", "shop", "passed"): 0})
		if err := f.Unblock(testOrg, "shop", b.Number, time.Now()); err != nil {
			t.Fatal(err)
		}
		settle()
		expect(t, h.metrics(), map[string]float64{running("shop", "production"): 1, awaiting("shop", "production"): 0})
		if n := len(f.Requests()) - before; n != 0 {
			t.Errorf("%d API requests, want none", n)
		}
		h.next() // the poll agrees
		expect(t, h.metrics(), map[string]float64{running("shop", "production"): 1, awaiting("shop", "production"): 0})
	})
}

// TestWebhookDuplicatesAndOutOfOrder: the same build.finished three times and a stale
// build.running delivered after it (as Buildkite may) count once and leave the gauge at 0.
func TestWebhookDuplicatesAndOutOfOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b := f.AddBuild(testOrg, "shop", openBuild(time.Now().Add(-5*time.Minute)))
		h := startHooked(t, f, []backstage.Component{component("shop", "shop")}, false)
		if err := f.UpdateBuild(testOrg, "shop", b.Number, func(*buildkite.Build) {}); err != nil { // a build.running
			t.Fatal(err)
		}
		stale := f.Deliveries()[0]
		if stale.Event != "build.running" {
			t.Fatalf("first delivery %s, want build.running", stale.Event)
		}
		if err := f.FinishBuild(testOrg, "shop", b.Number, "passed", time.Now()); err != nil {
			t.Fatal(err)
		}
		for range 2 {
			if _, err := f.SendWebhook("build.finished", testOrg, "shop", b.Number); err != nil {
				t.Fatal(err)
			}
		}
		if code, err := buildkitetest.Post(h.client, "http://exporter.test"+webhook.Path, stale.Header, stale.Body); err != nil || code != http.StatusAccepted {
			t.Fatalf("stale delivery: %d %v", code, err)
		}
		settle()
		want := map[string]float64{running("shop", "production"): 0, deployments("shop", "production", "shop", "passed"): 1}
		expect(t, h.metrics(), want)
		// Once more in a later window, after the poll forgot its overlay.
		h.next()
		if code, err := buildkitetest.Post(h.client, "http://exporter.test"+webhook.Path, stale.Header, stale.Body); err != nil || code != http.StatusAccepted {
			t.Fatalf("stale delivery: %d %v", code, err)
		}
		settle()
		expect(t, h.metrics(), want)
		h.next()
		expect(t, h.metrics(), want)
	})
}

// TestWebhookFailedBuildFetchesJobsOnce: a failed build's outcome is keyed by its attempt, which
// needs its jobs: one Get-a-build, whose jobs the poll that re-reads the build reuses, and the
// poll's record is the same one.
func TestWebhookFailedBuildFetchesJobsOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		ob := openBuild(time.Now().Add(-5 * time.Minute))
		ob.Jobs = []buildkite.Job{{Type: buildkite.JobTypeScript, Name: "deploy", State: "running", CreatedAt: ob.CreatedAt, RunnableAt: ob.CreatedAt, StartedAt: ob.StartedAt}}
		b := f.AddBuild(testOrg, "shop", ob)
		h := startHooked(t, f, []backstage.Component{component("shop", "shop")}, true)
		gets := func() int {
			n := 0
			for _, r := range f.Requests() {
				if r.Route == buildkitetest.RouteBuild {
					n++
				}
			}
			return n
		}
		before := gets()
		f.SetWebhook(nil) // the job's failure makes the build failing: not what this test is about
		if err := f.FinishJob(testOrg, "shop", b.Number, b.Jobs[0].ID, "failed", ob.StartedAt.Time, time.Now()); err != nil {
			t.Fatal(err)
		}
		f.SetWebhook(&buildkitetest.Webhook{URL: "http://exporter.test" + webhook.Path, Token: hookToken, Signed: true, Client: h.client})
		if err := f.FinishBuild(testOrg, "shop", b.Number, "failed", time.Now()); err != nil {
			t.Fatal(err)
		}
		settle()
		if n := gets() - before; n != 1 {
			t.Errorf("%d Get-a-build requests for the webhook, want 1", n)
		}
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop", "failed"): 1, running("shop", "production"): 0})
		h.next()
		h.next()
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop", "failed"): 1})
		if n := gets() - before; n != 1 {
			t.Errorf("%d Get-a-build requests after the polls re-read the build, want still 1: the poll takes the webhook's jobs", n)
		}
	})
}

// TestWebhookLost: a lost build.finished (Buildkite gave up, the listener was down) is counted
// by the next poll.
func TestWebhookLost(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b := f.AddBuild(testOrg, "shop", openBuild(time.Now().Add(-5*time.Minute)))
		h := startHooked(t, f, []backstage.Component{component("shop", "shop")}, false)
		b2 := f.AddBuild(testOrg, "shop", openBuild(time.Now())) // known from its build.running only
		f.SetWebhook(&buildkitetest.Webhook{URL: "http://exporter.test" + webhook.Path, Token: hookToken, Client: h.client,
			Drop: func(event string, _ buildkite.Build) bool { return event == "build.finished" }})
		for _, n := range []int{b.Number, b2.Number} {
			if err := f.FinishBuild(testOrg, "shop", n, "passed", time.Now()); err != nil {
				t.Fatal(err)
			}
		}
		settle()
		expect(t, h.metrics(), map[string]float64{running("shop", "production"): 2, deployments("shop", "production", "shop", "passed"): 0})
		h.next()
		expect(t, h.metrics(), map[string]float64{running("shop", "production"): 0, deployments("shop", "production", "shop", "passed"): 2})
	})
}

// TestWebhookDuringPoll: deliveries while a poll is in flight are applied at once, and the
// poll's commit neither undoes them nor counts them again.
func TestWebhookDuringPoll(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b1 := f.AddBuild(testOrg, "shop", openBuild(time.Now().Add(-5*time.Minute)))
		h := startHooked(t, f, []backstage.Component{component("shop", "shop")}, true)
		// The next cycle's listings each take 20 s.
		f.InjectFault(buildkitetest.Fault{Route: buildkitetest.RoutePipelineBuilds, Delay: 20 * time.Second, Times: 2})
		time.Sleep(testInterval + time.Second)
		waitIdle() // in the first listing's delay
		if err := f.FinishBuild(testOrg, "shop", b1.Number, "passed", time.Now()); err != nil {
			t.Fatal(err)
		}
		b2 := f.AddBuild(testOrg, "shop", openBuild(time.Now()))
		settle()
		want := map[string]float64{running("shop", "production"): 1, deployments("shop", "production", "shop", "passed"): 1}
		expect(t, h.metrics(), want)
		time.Sleep(time.Minute) // the cycle ends
		waitIdle()
		expect(t, h.metrics(), want)
		if err := f.FinishBuild(testOrg, "shop", b2.Number, "canceled", time.Now()); err != nil {
			t.Fatal(err)
		}
		settle()
		want = map[string]float64{running("shop", "production"): 0, deployments("shop", "production", "shop", "canceled"): 1, deployments("shop", "production", "shop", "passed"): 1}
		expect(t, h.metrics(), want)
		h.next()
		expect(t, h.metrics(), want)
	})
}

// TestWebhookDuringBackfill: a finish delivered while the first start's backfill runs is not
// counted on its own; the backfill counts it, once, when it completes.
func TestWebhookDuringBackfill(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.AddBuild(testOrg, "shop", finished(time.Now().Add(-48*time.Hour), time.Minute, "passed", map[string]string{"environment": "production"}))
		b := f.AddBuild(testOrg, "shop", openBuild(time.Now().Add(-5*time.Minute)))
		f.InjectFault(buildkitetest.Fault{Route: buildkitetest.RoutePipelineBuilds, Delay: 10 * time.Minute})
		h := startHooked(t, f, []backstage.Component{component("shop", "shop")}, false) // returns inside the delay
		if err := f.FinishBuild(testOrg, "shop", b.Number, "passed", time.Now()); err != nil {
			t.Fatal(err)
		}
		settle()
		if got := h.c.Snapshot(); got.Polled {
			t.Fatal("the backfill ended before the test's webhook")
		}
		if got := h.metrics()[deployments("shop", "production", "shop", "passed")]; got != 0 {
			t.Errorf("during the backfill: %v passed deployments exported, want none yet", got)
		}
		time.Sleep(10 * time.Minute)
		waitIdle()
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop", "passed"): 2})
		h.next()
		expect(t, h.metrics(), map[string]float64{deployments("shop", "production", "shop", "passed"): 2})
	})
}

// TestWebhookUnlinkedFlood: deliveries for a pipeline no component links are ignored in the
// handler: nothing queued, no API request, no publish.
func TestWebhookUnlinkedFlood(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		f.AddPipeline(testOrg, buildkite.Pipeline{Slug: "shop"})
		h := startHooked(t, f, []backstage.Component{component("shop", "shop")}, false)
		other := f.AddBuild(testOrg, "unlinked", openBuild(time.Now()))
		snap := h.c.Snapshot()
		before := len(f.Requests())
		for range 1000 {
			if _, err := f.SendWebhook("build.running", testOrg, "unlinked", other.Number); err != nil {
				t.Fatal(err)
			}
		}
		settle()
		if got := h.count("build.running", webhook.ResultIgnored); got != 1001 {
			t.Errorf("ignored build.running = %d, want 1001", got)
		}
		if got := h.count("build.running", webhook.ResultAccepted); got != 0 {
			t.Errorf("accepted build.running = %d, want 0", got)
		}
		if n := len(f.Requests()) - before; n != 0 {
			t.Errorf("%d API requests, want none", n)
		}
		if h.c.Snapshot() != snap {
			t.Error("the flood published a snapshot")
		}
		if n := len(h.c.events); n != 0 {
			t.Errorf("%d builds queued", n)
		}
	})
}

// TestWebhookForgedChangesNothing: a forged, replayed or malformed delivery for a linked
// pipeline changes no gauge and no count.
func TestWebhookForgedChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake()
		b := f.AddBuild(testOrg, "shop", openBuild(time.Now().Add(-5*time.Minute)))
		h := startHooked(t, f, []backstage.Component{component("shop", "shop")}, true)
		f.SetWebhook(nil)
		if err := f.FinishBuild(testOrg, "shop", b.Number, "failed", time.Now()); err != nil {
			t.Fatal(err)
		}
		body, _, err := f.WebhookBody("build.finished", testOrg, "shop", b.Number)
		if err != nil {
			t.Fatal(err)
		}
		url := "http://exporter.test" + webhook.Path
		post := func(hd http.Header, body []byte) int {
			hd.Set("X-Buildkite-Event", "build.finished")
			code, err := buildkitetest.Post(h.client, url, hd, body)
			if err != nil {
				t.Fatal(err)
			}
			return code
		}
		sig := func(key string, at time.Time, body []byte) http.Header {
			return http.Header{"X-Buildkite-Signature": {buildkitetest.SignWebhook(key, at, body)}}
		}
		for _, tc := range []struct {
			name string
			code int
			h    http.Header
			body []byte
		}{
			{"forged", http.StatusUnauthorized, sig("guess", time.Now(), body), body},
			{"wrong token", http.StatusUnauthorized, http.Header{"X-Buildkite-Token": {"guess"}}, body},
			{"replayed", http.StatusUnauthorized, sig(hookToken, time.Now().Add(-6*time.Minute), body), body},
			{"malformed", http.StatusBadRequest, sig(hookToken, time.Now(), []byte(`{"build":`)), []byte(`{"build":`)},
			{"oversized", http.StatusRequestEntityTooLarge, http.Header{"X-Buildkite-Token": {hookToken}}, []byte(`{"x":"` + strings.Repeat("x", webhook.DefaultMaxBodyBytes) + `"}`)},
		} {
			if got := post(tc.h, tc.body); got != tc.code {
				t.Errorf("%s: status %d, want %d", tc.name, got, tc.code)
			}
		}
		settle()
		expect(t, h.metrics(), map[string]float64{running("shop", "production"): 1, deployments("shop", "production", "shop", "failed"): 0})
		h.next() // the poll is the truth
		expect(t, h.metrics(), map[string]float64{running("shop", "production"): 0, deployments("shop", "production", "shop", "failed"): 1})
	})
}
