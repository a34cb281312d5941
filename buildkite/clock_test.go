package buildkite_test

import (
	"context"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

func TestServerTimeFollowsTheLatestDateHeader(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		skew := 90 * time.Minute // Buildkite's clock runs ahead of ours
		f := buildkitetest.New(buildkitetest.WithClock(func() time.Time { return time.Now().Add(skew) }))
		f.SetToken(token, allScopes...)
		c := inProcess(t, f, buildkite.Config{})
		if _, ok := c.ServerTime(); ok {
			t.Fatal("ServerTime known before any answer")
		}
		if _, err := c.AccessToken(context.Background()); err != nil {
			t.Fatal(err)
		}
		check := func(when string) {
			t.Helper()
			st, ok := c.ServerTime()
			if want := time.Now().Add(skew); !ok || st.Before(want.Add(-time.Second)) || st.After(want.Add(time.Second)) {
				t.Errorf("%s: ServerTime = %v, %v; want %v within the header's second", when, st, ok, want)
			}
			if d, ok := c.ClockSkew(); !ok || d < skew-time.Second || d > skew+time.Second {
				t.Errorf("%s: ClockSkew = %v, %v; want %v", when, d, ok, skew)
			}
		}
		check("after the first answer")
		// Between answers, it runs on with the local clock.
		time.Sleep(10 * time.Minute)
		check("10 minutes later")
		// A later answer wins, even an error.
		skew = -time.Hour
		_, _ = c.GetPipeline(context.Background(), "acme", "nope")
		check("after a 404 from a clock an hour behind")
	})
}

// dateTransport answers with the given Date header.
type dateTransport string

func (d dateTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	h := http.Header{"Content-Type": {"application/json"}}
	if d != "" {
		h.Set("Date", string(d))
	}
	return &http.Response{StatusCode: 200, Header: h, Body: http.NoBody, Request: r}, nil
}

func TestServerTimeIgnoresBadDates(t *testing.T) {
	for _, d := range []dateTransport{"", "yesterday", "Mon, 99 Foo 2026 25:61:00 GMT"} {
		c := newClient(t, buildkite.Config{BaseURL: "http://buildkite.test/v2/", HTTPClient: &http.Client{Transport: d}})
		_, _ = c.AccessToken(context.Background())
		if st, ok := c.ServerTime(); ok {
			t.Errorf("Date %q: ServerTime = %v, want unknown", string(d), st)
		}
	}
}
