package webhook

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

const testToken = "webhook-token-0123456789"

// sink records what the handler hands on.
type sink struct {
	mu     sync.Mutex
	linked map[string]bool // "<org>/<pipeline>"
	full   bool
	got    []offered
	asked  int
}

type offered struct {
	Event, Org, Pipeline string
	Build                buildkite.Build
}

func (s *sink) Linked(org, pipeline string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.asked++
	return s.linked[org+"/"+pipeline]
}

func (s *sink) Offer(event, org string, b *buildkite.Build, _ time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.full {
		return false
	}
	s.got = append(s.got, offered{Event: event, Org: org, Pipeline: b.PipelineSlug(), Build: *b})
	return true
}

// rig is a handler behind a real HTTP server, with a clock the test sets.
type rig struct {
	t    *testing.T
	h    *Handler
	sink *sink
	url  string
	now  time.Time
	mu   sync.Mutex
}

func newRig(t *testing.T, maxBody int64) *rig {
	t.Helper()
	r := &rig{t: t, sink: &sink{linked: map[string]bool{"acme/shop-deploy": true}}, now: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	h, err := New(Options{Token: []byte(testToken), Sink: r.sink, MaxBodyBytes: maxBody, Now: r.clock})
	if err != nil {
		t.Fatal(err)
	}
	r.h = h
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	r.url = srv.URL + Path
	return r
}

func (r *rig) clock() time.Time {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.now
}

func (r *rig) advance(d time.Duration) {
	r.mu.Lock()
	r.now = r.now.Add(d)
	r.mu.Unlock()
}

func (r *rig) post(h http.Header, body []byte) int {
	r.t.Helper()
	code, err := buildkitetest.Post(http.DefaultClient, r.url, h, body)
	if err != nil {
		r.t.Fatal(err)
	}
	return code
}

func tokenHeader(event, token string) http.Header {
	h := http.Header{}
	h.Set("X-Buildkite-Event", event)
	h.Set("X-Buildkite-Token", token)
	return h
}

func signedHeader(event, sig string) http.Header {
	h := http.Header{}
	h.Set("X-Buildkite-Event", event)
	h.Set("X-Buildkite-Signature", sig)
	return h
}

// buildBody is a build event as Buildkite sends it (reference §12), rendered by the fake.
func buildBody(t *testing.T, event, pipeline string) []byte {
	t.Helper()
	f := buildkitetest.New()
	at := time.Date(2026, 12, 1, 11, 50, 0, 0, time.UTC)
	b := f.AddBuild("acme", pipeline, buildkite.Build{State: "passed", Commit: strings.Repeat("a", 40),
		CreatedAt: buildkite.Timestamp{Time: at}, StartedAt: buildkite.Timestamp{Time: at}, FinishedAt: buildkite.Timestamp{Time: at.Add(5 * time.Minute)},
		MetaData: map[string]string{"environment": "production"}})
	body, _, err := f.WebhookBody(event, "acme", pipeline, b.Number)
	if err != nil {
		t.Fatal(err)
	}
	return body
}

func (r *rig) count(event, result string) float64 {
	r.t.Helper()
	return testutil.ToFloat64(countOf{r.h, event, result})
}

// countOf is one series of the events counter, for testutil.ToFloat64.
type countOf struct {
	h             *Handler
	event, result string
}

func (c countOf) Describe(ch chan<- *prometheus.Desc) { ch <- eventsDesc }
func (c countOf) Collect(ch chan<- prometheus.Metric) {
	for _, n := range c.h.Status().Counts {
		if n.Event == c.event && n.Result == c.result {
			ch <- prometheus.MustNewConstMetric(eventsDesc, prometheus.CounterValue, float64(n.Count), n.Event, n.Result)
		}
	}
}

func TestTokenAndSignature(t *testing.T) {
	r := newRig(t, 0)
	body := buildBody(t, "build.finished", "shop-deploy")
	now := r.clock()
	for _, tc := range []struct {
		name   string
		header http.Header
		want   int
		result string
	}{
		{"token", tokenHeader("build.finished", testToken), http.StatusAccepted, ResultAccepted},
		{"wrong token", tokenHeader("build.finished", testToken+"x"), http.StatusUnauthorized, ResultRejectedAuth},
		{"empty token", tokenHeader("build.finished", ""), http.StatusUnauthorized, ResultRejectedAuth},
		{"no credentials", http.Header{"X-Buildkite-Event": {"build.finished"}}, http.StatusUnauthorized, ResultRejectedAuth},
		{"signature", signedHeader("build.finished", buildkitetest.SignWebhook(testToken, now, body)), http.StatusAccepted, ResultAccepted},
		{"signature 4m59s old", signedHeader("build.finished", buildkitetest.SignWebhook(testToken, now.Add(-MaxSkew+time.Second), body)), http.StatusAccepted, ResultAccepted},
		{"signature with another key", signedHeader("build.finished", buildkitetest.SignWebhook("other", now, body)), http.StatusUnauthorized, ResultRejectedAuth},
		{"signature of another body", signedHeader("build.finished", buildkitetest.SignWebhook(testToken, now, append(bytes.Clone(body), ' '))), http.StatusUnauthorized, ResultRejectedAuth},
		{"forged and stale", signedHeader("build.finished", buildkitetest.SignWebhook("other", now.Add(-time.Hour), body)), http.StatusUnauthorized, ResultRejectedAuth},
		{"stale", signedHeader("build.finished", buildkitetest.SignWebhook(testToken, now.Add(-MaxSkew-time.Second), body)), http.StatusUnauthorized, ResultRejectedReplay},
		{"future", signedHeader("build.finished", buildkitetest.SignWebhook(testToken, now.Add(MaxSkew+time.Second), body)), http.StatusUnauthorized, ResultRejectedReplay},
		{"malformed", signedHeader("build.finished", "sha256=abc"), http.StatusUnauthorized, ResultRejectedAuth},
		// A valid signature wins over a wrong clear token sent alongside it.
		{"signature and wrong token", func() http.Header {
			h := signedHeader("build.finished", buildkitetest.SignWebhook(testToken, now.Add(-time.Second), body))
			h.Set("X-Buildkite-Token", "wrong")
			return h
		}(), http.StatusAccepted, ResultAccepted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.count("build.finished", tc.result)
			if got := r.post(tc.header, body); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
			if d := r.count("build.finished", tc.result) - before; d != 1 {
				t.Errorf("%s counted %v times, want once", tc.result, d)
			}
		})
	}
	if n := len(r.sink.got); n != 4 {
		t.Errorf("%d builds handed on, want 4 (the accepted deliveries)", n)
	}
}

func TestReplayedSignature(t *testing.T) {
	r := newRig(t, 0)
	body := buildBody(t, "build.finished", "shop-deploy")
	h := signedHeader("build.finished", buildkitetest.SignWebhook(testToken, r.clock(), body))
	if got := r.post(h, body); got != http.StatusAccepted {
		t.Fatalf("first delivery: %d", got)
	}
	// The same signed delivery again, within the window and after it.
	if got := r.post(h, body); got != http.StatusUnauthorized {
		t.Errorf("replay within the window: %d, want 401", got)
	}
	r.advance(MaxSkew + time.Minute)
	if got := r.post(h, body); got != http.StatusUnauthorized {
		t.Errorf("replay after the window: %d, want 401", got)
	}
	if got := r.count("build.finished", ResultRejectedReplay); got != 2 {
		t.Errorf("rejected_replay = %v, want 2", got)
	}
	if n := len(r.sink.got); n != 1 {
		t.Errorf("%d builds handed on, want 1", n)
	}
}

func TestBodies(t *testing.T) {
	r := newRig(t, 4096)
	good := buildBody(t, "build.finished", "shop-deploy")
	for _, tc := range []struct {
		name, event string
		body        string
		want        int
		result      string
	}{
		{"oversized", "build.finished", `{"event":"build.finished","build":{"id":"` + strings.Repeat("x", 5000) + `"}}`, http.StatusRequestEntityTooLarge, ResultRejectedBody},
		{"not JSON", "build.finished", `event=build.finished`, http.StatusBadRequest, ResultRejectedBody},
		{"empty", "build.finished", ``, http.StatusBadRequest, ResultRejectedBody},
		{"null", "build.finished", `null`, http.StatusBadRequest, ResultRejectedBody},
		{"array", "build.finished", `[{"event":"build.finished"}]`, http.StatusBadRequest, ResultRejectedBody},
		{"trailing data", "build.finished", string(good) + `{}`, http.StatusBadRequest, ResultRejectedBody},
		{"no build", "build.finished", `{"event":"build.finished","pipeline":{"slug":"shop-deploy"}}`, http.StatusBadRequest, ResultRejectedBody},
		{"build not an object", "build.finished", `{"event":"build.finished","build":"x","pipeline":{"slug":"shop-deploy"}}`, http.StatusBadRequest, ResultRejectedBody},
		{"no pipeline", "build.finished", `{"event":"build.finished","build":{"id":"b","number":1,"state":"passed"}}`, http.StatusBadRequest, ResultRejectedBody},
		{"no organization", "build.finished", `{"event":"build.finished","build":{"id":"b","number":1,"state":"passed"},"pipeline":{"slug":"shop-deploy"}}`, http.StatusBadRequest, ResultRejectedBody},
		{"no id", "build.finished", `{"event":"build.finished","build":{"number":1,"state":"passed","url":"https://api.buildkite.com/v2/organizations/acme/pipelines/shop-deploy/builds/1"},"pipeline":{"slug":"shop-deploy"}}`, http.StatusBadRequest, ResultRejectedBody},
		{"wrong types", "build.finished", `{"event":"build.finished","build":{"id":"b","number":"one","state":"passed"},"pipeline":{"slug":"shop-deploy","url":"https://api.buildkite.com/v2/organizations/acme/pipelines/shop-deploy"}}`, http.StatusBadRequest, ResultRejectedBody},
		{"event mismatch", "build.running", string(good), http.StatusBadRequest, ResultRejectedBody},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := r.count(tc.event, tc.result)
			if got := r.post(tokenHeader(tc.event, testToken), []byte(tc.body)); got != tc.want {
				t.Errorf("status %d, want %d", got, tc.want)
			}
			if d := r.count(tc.event, tc.result) - before; d != 1 {
				t.Errorf("%s{%s} counted %v times, want once", tc.result, tc.event, d)
			}
		})
	}
	if n := len(r.sink.got); n != 0 {
		t.Errorf("%d builds handed on, want none", n)
	}
}

func TestEventsIgnoredAndLabels(t *testing.T) {
	r := newRig(t, 0)
	ping := []byte(`{"event":"ping","service":{"id":"s","provider":"webhook","settings":{"url":"https://x"}},"organization":{"slug":"acme"},"sender":{"id":"u","name":"U"}}`)
	if got := r.post(tokenHeader("ping", testToken), ping); got != http.StatusOK {
		t.Errorf("ping: %d", got)
	}
	job := buildBody(t, "job.finished", "shop-deploy")
	if got := r.post(tokenHeader("job.finished", testToken), job); got != http.StatusAccepted {
		t.Errorf("job.finished: %d", got)
	}
	// A name chosen by whoever posts: counted under other, before and after authentication.
	hostile := `build.finished"} 1\nevil{`
	if got := r.post(tokenHeader(hostile, testToken), []byte(`{}`)); got != http.StatusAccepted {
		t.Errorf("unknown event: %d, want 202", got)
	}
	if got := r.post(tokenHeader("agent.connected", "wrong"), []byte(`{}`)); got != http.StatusUnauthorized {
		t.Errorf("unauthenticated unknown event: %d", got)
	}
	unlinked := buildBody(t, "build.finished", "other-pipeline")
	if got := r.post(tokenHeader("build.finished", testToken), unlinked); got != http.StatusAccepted {
		t.Errorf("unlinked: %d", got)
	}
	want := map[[2]string]float64{
		{"ping", ResultAccepted}:           1,
		{"job.finished", ResultIgnored}:    1,
		{EventOther, ResultIgnored}:        1,
		{EventOther, ResultRejectedAuth}:   1,
		{"build.finished", ResultIgnored}:  1,
		{"build.finished", ResultAccepted}: 0,
	}
	for k, v := range want {
		if got := r.count(k[0], k[1]); got != v {
			t.Errorf("%v = %v, want %v", k, got, v)
		}
	}
	// Only known names ever become label values.
	for _, c := range r.h.Status().Counts {
		if EventLabel(c.Event) != c.Event {
			t.Errorf("event label %q is not a known name", c.Event)
		}
	}
	if n := len(r.sink.got); n != 0 {
		t.Errorf("%d builds handed on, want none", n)
	}
	if st := r.h.Status(); !st.LastEvent.Equal(r.clock()) {
		t.Errorf("last event %v, want the ping's %v", st.LastEvent, r.clock())
	}
}

func TestHandedOnBuild(t *testing.T) {
	r := newRig(t, 0)
	body := buildBody(t, "build.finished", "shop-deploy")
	if got := r.post(tokenHeader("build.finished", testToken), body); got != http.StatusAccepted {
		t.Fatalf("status %d", got)
	}
	if len(r.sink.got) != 1 {
		t.Fatalf("handed on %d builds", len(r.sink.got))
	}
	got := r.sink.got[0]
	want := offered{Event: "build.finished", Org: "acme", Pipeline: "shop-deploy"}
	if diff := cmp.Diff(want, offered{Event: got.Event, Org: got.Org, Pipeline: got.Pipeline}); diff != "" {
		t.Errorf("offered (-want +got):\n%s", diff)
	}
	b := got.Build
	if b.State != "passed" || b.Number != 1 || b.Jobs != nil || b.MetaData["environment"] != "production" || b.FinishedAt.IsZero() {
		t.Errorf("build %+v: want the payload's passed build #1 without jobs", b)
	}
}

func TestFullQueue(t *testing.T) {
	r := newRig(t, 0)
	r.sink.full = true
	body := buildBody(t, "build.finished", "shop-deploy")
	if got := r.post(tokenHeader("build.finished", testToken), body); got != http.StatusAccepted {
		t.Errorf("status %d, want 202: the poll reads the build", got)
	}
	st := r.h.Status()
	if st.Dropped != 1 || r.count("build.finished", ResultIgnored) != 1 {
		t.Errorf("dropped %d, ignored %v; want 1 and 1", st.Dropped, r.count("build.finished", ResultIgnored))
	}
}

func TestRefusesWithoutToken(t *testing.T) {
	for _, tok := range []string{"", "  \n"} {
		if _, err := New(Options{Token: []byte(tok), Sink: &sink{}}); err == nil {
			t.Errorf("New(token %q) accepted", tok)
		}
	}
}

func TestSignMatchesTheFake(t *testing.T) {
	// Two implementations, one from the reference each: the receiver's and the fake's.
	at := time.Unix(1764590400, 0)
	for i, body := range [][]byte{nil, []byte(`{}`), []byte(strings.Repeat("é", 1000))} {
		if got, want := Sign([]byte(testToken), at, body), buildkitetest.SignWebhook(testToken, at, body); got != want {
			t.Errorf("%d: Sign = %q, the fake signs %q", i, got, want)
		}
	}
}

func TestMetricsLint(t *testing.T) {
	r := newRig(t, 0)
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(r.h)
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	n, err := testutil.GatherAndCount(reg, "buildkite_exporter_webhook_events_total")
	if err != nil {
		t.Fatal(err)
	}
	if want := (len(Events) + 1) * len(Results); n != want {
		t.Errorf("%d series of events_total, want every (event, result): %d", n, want)
	}
}
