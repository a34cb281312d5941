package status

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// hookedSource is the fixture with a webhook receiver.
type hookedSource struct {
	*fakeSource
	hooks *Webhooks
}

func (s hookedSource) Webhooks() *Webhooks { return s.hooks }

func TestWebhooks(t *testing.T) {
	last := fixtureNow.Add(-90 * time.Second)
	src := hookedSource{newFixtureSource(), &Webhooks{LastEvent: last, Dropped: 2, Counts: []WebhookCount{
		{"build.finished", "accepted", 7}, {"build.finished", "rejected_auth", 0}, {"build.running", "ignored", 3},
		{"build.running", "accepted", 5}, {"other", "rejected_auth", 4}, {"ping", "rejected_replay", 0},
	}}}
	h := fixtureHandler(src)
	p := getPage(t, h, "")
	want := &WebhooksStatus{LastEventAt: last.UTC(), Dropped: 2, Events: []WebhookEventStatus{
		{Event: "build.finished", Accepted: 7},
		{Event: "build.running", Accepted: 5, Ignored: 3},
		{Event: "other", RejectedAuth: 4},
	}}
	if diff := cmp.Diff(want, p.Webhooks); diff != "" {
		t.Errorf("webhooks (-want +got):\n%s", diff)
	}
	res, body := get(t, h, http.MethodGet, "/status")
	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %d", res.StatusCode)
	}
	for _, s := range []string{"<h2>Webhooks</h2>", "<code>build.running</code>", "2 build events dropped", "Rejected deliveries of <code>other</code>"} {
		if !strings.Contains(body, s) {
			t.Errorf("the page lacks %q", s)
		}
	}

	// Without a receiver (or before a delivery) the section says so, or is absent.
	if p := getPage(t, fixtureHandler(newFixtureSource()), ""); p.Webhooks != nil {
		t.Errorf("webhooks without a receiver: %+v", p.Webhooks)
	}
	if _, body := get(t, fixtureHandler(newFixtureSource()), http.MethodGet, "/status"); strings.Contains(body, "<h2>Webhooks</h2>") {
		t.Error("a Webhooks section without a receiver")
	}
	_, body = get(t, fixtureHandler(hookedSource{newFixtureSource(), &Webhooks{}}), http.MethodGet, "/status")
	if !strings.Contains(body, "none since the exporter started") {
		t.Error("an idle receiver's section does not say no delivery arrived")
	}
}
