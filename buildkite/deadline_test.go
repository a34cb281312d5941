package buildkite_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

// TestTricklingBodyIsBoundedByTheRequestTimeout: a body that arrives one byte every 10 s would
// hold a poll for hours; each attempt ends at the per-request deadline, 60 s by default.
func TestTricklingBodyIsBoundedByTheRequestTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := buildkitetest.New()
		f.SetToken(token, allScopes...)
		addMany(f, "acme", "shop-deploy", 30, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
		f.InjectFault(buildkitetest.Fault{Trickle: 10 * time.Second, Times: 2})
		c := inProcess(t, f, buildkite.Config{MaxRetries: 1})
		start := time.Now()
		_, err := collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{})
		took := time.Since(start)
		var te *buildkite.TransportError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "no complete answer within the request timeout of 1m0s") {
			t.Fatalf("err = %v, want a TransportError naming the request timeout", err)
		}
		// Two attempts of 60 s and a backoff of at most 1 s between them.
		if took < 2*buildkite.DefaultRequestTimeout || took > 2*buildkite.DefaultRequestTimeout+time.Second {
			t.Errorf("gave up after %v, want 2×%v plus the backoff", took, buildkite.DefaultRequestTimeout)
		}

		// With the fault gone the next call works: the deadline is per request, not per client.
		if builds, err := collect(t, c, "acme", "shop-deploy", buildkite.ListBuildsOptions{}); err != nil || len(builds) != 30 {
			t.Errorf("after the trickle: %d builds, err %v", len(builds), err)
		}
	})
}

func TestTricklingBodyOverHTTP(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "1000")
		for range 1000 {
			if _, err := w.Write([]byte(" ")); err != nil {
				return
			}
			w.(http.Flusher).Flush()
			select {
			case <-r.Context().Done():
				return
			case <-time.After(10 * time.Second):
			}
		}
	}))
	defer srv.Close()
	c := newClient(t, buildkite.Config{BaseURL: srv.URL + "/v2/", HTTPClient: srv.Client(), MaxRetries: -1, RequestTimeout: 300 * time.Millisecond})
	start := time.Now()
	_, err := c.AccessToken(context.Background())
	if took := time.Since(start); err == nil || took > 5*time.Second {
		t.Fatalf("err = %v after %v, want a timeout after about 300ms", err, took)
	}
	if !strings.Contains(err.Error(), "request timeout of 300ms") {
		t.Errorf("error %q does not name the timeout", err)
	}
	if _, err := buildkite.NewClient(buildkite.Config{Token: "t", RequestTimeout: -time.Second}); err == nil {
		t.Error("a negative request timeout was accepted")
	}
}
