package buildkitetest

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// received is what a test receiver got.
type received struct {
	header http.Header
	body   []byte
}

func receiver(t *testing.T) (string, func() []received) {
	var mu sync.Mutex
	var got []received
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, received{r.Header.Clone(), b})
		mu.Unlock()
		w.WriteHeader(http.StatusAccepted)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/hook", func() []received { mu.Lock(); defer mu.Unlock(); return append([]received(nil), got...) }
}

// TestWebhooksFollowBuilds: every change of a build sends the event of its new state, with the
// documented headers and body (reference §12), signed or with the token.
func TestWebhooksFollowBuilds(t *testing.T) {
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f := New(WithClock(func() time.Time { return now }))
	url, got := receiver(t)
	f.SetWebhook(&Webhook{URL: url, Token: "tok", Signed: true})
	b := f.AddBuild("acme", "shop", buildkite.Build{State: "running", StartedAt: buildkite.Timestamp{Time: now},
		Jobs: []buildkite.Job{{Type: "script", State: "running"}}})
	if err := f.UpdateBuild("acme", "shop", b.Number, func(b *buildkite.Build) { b.Blocked, b.State = true, "passed" }); err != nil {
		t.Fatal(err)
	}
	if err := f.Unblock("acme", "shop", b.Number, now); err != nil {
		t.Fatal(err)
	}
	if err := f.FinishJob("acme", "shop", b.Number, b.Jobs[0].ID, "passed", now, now); err != nil { // no build change
		t.Fatal(err)
	}
	if err := f.FinishBuild("acme", "shop", b.Number, "failed", now); err != nil {
		t.Fatal(err)
	}
	f.SetWebhook(&Webhook{URL: url, Token: "tok"})
	if err := f.RetryBuild("acme", "shop", b.Number); err != nil {
		t.Fatal(err)
	}
	want := []string{"build.running", "build.finished", "build.running", "build.finished", "build.running"}
	deliveries := got()
	if len(deliveries) != len(want) {
		t.Fatalf("%d deliveries, want %d (%v)", len(deliveries), len(want), want)
	}
	for i, d := range deliveries {
		if ev := d.header.Get("X-Buildkite-Event"); ev != want[i] {
			t.Errorf("delivery %d: event %q, want %q", i, ev, want[i])
		}
		var body struct {
			Event    string         `json:"event"`
			Build    map[string]any `json:"build"`
			Pipeline map[string]any `json:"pipeline"`
			Sender   map[string]any `json:"sender"`
		}
		if err := json.Unmarshal(d.body, &body); err != nil {
			t.Fatal(err)
		}
		if body.Event != want[i] || body.Build == nil || body.Pipeline["slug"] != "shop" || body.Sender == nil {
			t.Errorf("delivery %d: body %s", i, d.body)
		}
		if _, ok := body.Build["jobs"]; ok {
			t.Errorf("delivery %d: a build event's build has jobs", i)
		}
		if _, ok := body.Build["pipeline"]; ok {
			t.Errorf("delivery %d: the pipeline is in the build, not beside it", i)
		}
		if i == 1 && body.Build["blocked"] != true {
			t.Errorf("a blocked build's build.finished has blocked %v", body.Build["blocked"])
		}
		sig := d.header.Get("X-Buildkite-Signature")
		if i < 4 {
			// timestamp=<unix>,signature=<hex HMAC-SHA256 of "<unix>.<body>">
			ts, mac, ok := strings.Cut(strings.TrimPrefix(sig, "timestamp="), ",signature=")
			m := hmac.New(sha256.New, []byte("tok"))
			m.Write([]byte(ts + "."))
			m.Write(d.body)
			if !ok || ts != strconv.FormatInt(now.Unix(), 10) || mac != hex.EncodeToString(m.Sum(nil)) || d.header.Get("X-Buildkite-Token") != "" {
				t.Errorf("delivery %d: signature %q", i, sig)
			}
		} else if sig != "" || d.header.Get("X-Buildkite-Token") != "tok" {
			t.Errorf("delivery %d: token %q, signature %q", i, d.header.Get("X-Buildkite-Token"), sig)
		}
	}
	if n := len(f.Deliveries()); n != len(want) {
		t.Errorf("Deliveries: %d, want %d", n, len(want))
	}
}
