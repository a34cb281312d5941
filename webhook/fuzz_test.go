package webhook

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

// FuzzDelivery posts a body under an event name and a signature header, then the same body
// signed correctly. Whatever they hold: no panic; only the documented statuses; a header not
// made with the token is never accepted; a correctly signed body is never refused for its
// credentials; and a build handed on has what the collector relies on. The seed corpus is in
// testdata/fuzz/FuzzDelivery (scripts/fuzz.sh runs it longer).
func FuzzDelivery(f *testing.F) {
	f.Add([]byte(`{"event":"build.finished","build":{"id":"b1","number":1,"state":"passed","url":"https://api.buildkite.com/v2/organizations/acme/pipelines/shop-deploy/builds/1"},"pipeline":{"slug":"shop-deploy","url":"https://api.buildkite.com/v2/organizations/acme/pipelines/shop-deploy"}}`),
		"build.finished", "timestamp=1764590400,signature=00")
	f.Add([]byte(`{"event":"ping"}`), "ping", "timestamp=1764590400,signature="+string(bytes.Repeat([]byte("ab"), 32)))
	f.Add([]byte(`[]`), "agent.connected", "")
	now := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, body []byte, event, sig string) {
		s := &sink{linked: map[string]bool{"acme/shop-deploy": true}}
		h, err := New(Options{Token: []byte(testToken), Sink: s, MaxBodyBytes: 1 << 16, Now: func() time.Time { return now }})
		if err != nil {
			t.Fatal(err)
		}
		post := func(sig string) int {
			req := httptest.NewRequest(http.MethodPost, Path, bytes.NewReader(body))
			req.Header.Set("X-Buildkite-Event", event)
			req.Header.Set("X-Buildkite-Signature", sig)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			return rec.Code
		}
		valid := buildkitetest.SignWebhook(testToken, now, body)
		code := post(sig)
		switch code {
		case http.StatusOK, http.StatusAccepted, http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d", code)
		}
		if sig != valid && code != http.StatusUnauthorized && sig != "" {
			t.Fatalf("header %q not made with the token: status %d", sig, code)
		}
		if sig == "" && code != http.StatusUnauthorized {
			t.Fatalf("no credentials: status %d", code)
		}
		if sig == valid {
			return // the second post would be a replay
		}
		if code := post(valid); code == http.StatusUnauthorized {
			t.Fatalf("a correctly signed body refused for its credentials")
		}
		for _, o := range s.got {
			if o.Build.ID == "" || o.Build.Number <= 0 || o.Org == "" || o.Pipeline == "" || !s.linked[o.Org+"/"+o.Pipeline] {
				t.Fatalf("handed on %+v", o)
			}
		}
		for _, c := range h.Status().Counts {
			if EventLabel(c.Event) != c.Event {
				t.Fatalf("label %q", c.Event)
			}
		}
	})
}
