package buildkite

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// gap returns the time between request i and i+1.
func gap(reqs []seen, i int) time.Duration { return reqs[i+1].at.Sub(reqs[i].at) }

func TestRateLimited429WaitsForTheNamedScope(t *testing.T) {
	for _, tc := range []struct {
		name      string
		header    map[string]string
		body      string
		wantScope string
		wantWait  time.Duration
	}{
		{
			name:   "user scope, reset in body",
			header: rlHeaders(150, 50, 0, 10),
			body:   `{"message":"You have exceeded your API rate limit. Please wait 10 seconds before making more requests.","scope":"rest_user","limit":50,"current":55,"reset":10}`,
			// The org window resets after 50 s; waiting that long would be wrong.
			wantScope: "rest_user", wantWait: 10 * time.Second,
		},
		{
			name:      "org scope, reset in body",
			header:    rlHeaders(0, 40, 30, 5),
			body:      `{"message":"You have exceeded your rest API rate limit. Please wait 40 seconds before making more requests.","scope":"rest","limit":200,"current":201,"reset":40}`,
			wantScope: "rest", wantWait: 40 * time.Second,
		},
		{
			name:      "user scope, reset only in header",
			header:    rlHeaders(150, 50, 0, 12),
			body:      `{"message":"slow down","scope":"rest_user"}`,
			wantScope: "rest_user", wantWait: 12 * time.Second,
		},
		{
			name:      "org scope, reset only in header",
			header:    rlHeaders(0, 33, 30, 5),
			body:      `{"message":"slow down","scope":"rest"}`,
			wantScope: "rest", wantWait: 33 * time.Second,
		},
		{
			name:      "no body: the header bucket that is empty",
			header:    rlHeaders(100, 50, 0, 7),
			body:      ``,
			wantScope: "rest_user", wantWait: 7 * time.Second,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &script{answers: []answer{
					{status: 429, header: tc.header, body: tc.body},
					{body: "[]", header: rlHeaders(199, 60, 49, 60)},
				}}
				reg := newRegistry()
				c := newTestClient(t, s, Config{Registerer: reg})
				if err := listOrg(c); err != nil {
					t.Fatalf("after one 429 the retry should succeed: %v", err)
				}
				reqs := s.requests()
				if len(reqs) != 2 {
					t.Fatalf("%d requests, want 2", len(reqs))
				}
				g := gap(reqs, 0)
				if g < tc.wantWait || g > tc.wantWait+resetMargin+resetJitter {
					t.Errorf("waited %v after the 429, want %v (+ up to %v margin)", g, tc.wantWait, resetMargin+resetJitter)
				}
				if got := testutil.ToFloat64(c.metrics.waits.WithLabelValues(tc.wantScope)); got != 1 {
					t.Errorf("throttled_waits_total{scope=%q} = %v, want 1", tc.wantScope, got)
				}
				if got := testutil.ToFloat64(c.metrics.requests.WithLabelValues(routeOrgBuilds, "429")); got != 1 {
					t.Errorf("requests_total{code=429} = %v, want 1", got)
				}
			})
		})
	}
}

func TestRateLimitedRetriesAreBounded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{answers: []answer{{status: 429, header: rlHeaders(100, 50, 0, 3),
			body: `{"message":"wait","scope":"rest_user","limit":50,"current":60,"reset":3}`}}}
		c := newTestClient(t, s, Config{MaxRetries: 2})
		err := listOrg(c)
		if !errors.Is(err, ErrRateLimited) {
			t.Fatalf("err = %v, want ErrRateLimited", err)
		}
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.RateLimitScope != "rest_user" {
			t.Errorf("err = %#v, want RateLimitScope rest_user", err)
		}
		if n := len(s.requests()); n != 3 {
			t.Errorf("%d requests, want 3 (1 + MaxRetries)", n)
		}
	})
}

func TestNearlySpentBudgetWaitsBeforeAny429(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The user bucket is down to its reserve (2) with 20 s to go; the org bucket is fine.
		s := &script{answers: []answer{
			{body: "[]", header: rlHeaders(180, 50, 2, 20)},
			{body: "[]", header: rlHeaders(179, 29, 49, 60)},
		}}
		c := newTestClient(t, s, Config{})
		for range 2 {
			if err := listOrg(c); err != nil {
				t.Fatal(err)
			}
		}
		reqs := s.requests()
		if g := gap(reqs, 0); g < 20*time.Second || g > 21*time.Second {
			t.Errorf("second request %v after the first, want about 20 s (the user reset)", g)
		}
		if got := testutil.ToFloat64(c.metrics.waits.WithLabelValues(scopeUser)); got != 1 {
			t.Errorf("throttled_waits_total{scope=rest_user} = %v, want 1", got)
		}
		// Plenty left: no wait.
		start := time.Now()
		if err := listOrg(c); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d != 0 {
			t.Errorf("a request with budget left waited %v", d)
		}
	})
}

func TestOrgReserveIsAFractionOfTheLimit(t *testing.T) {
	// 200/min org bucket: reserve 10, so 10 remaining waits and 11 does not.
	for _, tc := range []struct {
		remaining int
		wantWait  bool
	}{{11, false}, {10, true}} {
		b := newBudget()
		now := time.Unix(1000, 0)
		b.observe(http.Header{"Ratelimit-Limit": {"200"}, "Ratelimit-Remaining": {itoa(tc.remaining)}, "Ratelimit-Reset": {"30"}}, now, newClientMetrics())
		scope, d := b.wait(now)
		if got := d > 0; got != tc.wantWait {
			t.Errorf("remaining %d: wait %v (scope %q), want wait=%v", tc.remaining, d, scope, tc.wantWait)
		}
	}
}

func TestLocalRateLimitPacesRequests(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{answers: []answer{{body: "[]"}}}
		c := newTestClient(t, s, Config{RequestsPerMinute: 30})
		for range 5 {
			if err := listOrg(c); err != nil {
				t.Fatal(err)
			}
		}
		reqs := s.requests()
		// Burst of 2, then one every 2 s: 0, 0, 2, 4, 6.
		if total := reqs[4].at.Sub(reqs[0].at); total != 6*time.Second {
			t.Errorf("5 requests at 30/min took %v, want 6s", total)
		}
		if got := testutil.ToFloat64(c.metrics.waits.WithLabelValues(scopeLocal)); got != 3 {
			t.Errorf("throttled_waits_total{scope=local} = %v, want 3", got)
		}
	})
}

func TestServerErrorThenSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{answers: []answer{
			{status: 502, body: "<html>bad gateway</html>"},
			{status: 503, body: `{"message":"maintenance"}`},
			{body: `[{"id":"b1","number":1}]`},
		}}
		c := newTestClient(t, s, Config{})
		var got int
		err := c.ListOrganizationBuilds(context.Background(), "acme", ListBuildsOptions{}, func(p []Build) error { got += len(p); return nil })
		if err != nil || got != 1 {
			t.Fatalf("err=%v builds=%d, want success with 1 build", err, got)
		}
		reqs := s.requests()
		if len(reqs) != 3 {
			t.Fatalf("%d requests, want 3", len(reqs))
		}
		// Backoff: [0.5 s, 1 s) then [1 s, 2 s).
		if g := gap(reqs, 0); g < 500*time.Millisecond || g >= time.Second {
			t.Errorf("first backoff %v, want [0.5s,1s)", g)
		}
		if g := gap(reqs, 1); g < time.Second || g >= 2*time.Second {
			t.Errorf("second backoff %v, want [1s,2s)", g)
		}
		if got := testutil.ToFloat64(c.metrics.retries.WithLabelValues(routeOrgBuilds, "server_error")); got != 2 {
			t.Errorf("retries_total{reason=server_error} = %v, want 2", got)
		}
	})
}

func TestRetriesExhausted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{answers: []answer{{status: 500, body: `{"message":"oops"}`}}}
		c := newTestClient(t, s, Config{})
		start := time.Now()
		err := listOrg(c)
		var apiErr *APIError
		if !errors.As(err, &apiErr) || apiErr.StatusCode != 500 || !strings.Contains(err.Error(), "oops") {
			t.Fatalf("err = %v, want the last 500", err)
		}
		if n := len(s.requests()); n != 1+defaultMaxRetries {
			t.Errorf("%d requests, want %d", n, 1+defaultMaxRetries)
		}
		// Backoffs 1+2+4+8 s, each jittered down to at most half.
		if d := time.Since(start); d < 7500*time.Millisecond || d >= 15*time.Second {
			t.Errorf("gave up after %v, want [7.5s,15s)", d)
		}
	})
}

// failingTransport fails every request like a refused connection.
type failingTransport struct{ n *int }

func (f failingTransport) RoundTrip(*http.Request) (*http.Response, error) {
	*f.n++
	return nil, errors.New("dial tcp 10.0.0.1:443: connect: connection refused")
}

func TestTransportErrorsAreRetried(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		n := 0
		c := newTestClient(t, nil, Config{HTTPClient: &http.Client{Transport: failingTransport{&n}}, MaxRetries: 3})
		err := listOrg(c)
		var te *TransportError
		if !errors.As(err, &te) || !strings.Contains(err.Error(), "connection refused") {
			t.Fatalf("err = %v, want a TransportError", err)
		}
		if n != 4 {
			t.Errorf("%d attempts, want 4", n)
		}
		if got := testutil.ToFloat64(c.metrics.requests.WithLabelValues(routeOrgBuilds, "error")); got != 4 {
			t.Errorf("requests_total{code=error} = %v, want 4", got)
		}
	})
}

func TestCancelDuringRateLimitWait(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{answers: []answer{{status: 429, header: rlHeaders(0, 55, 40, 5),
			body: `{"message":"wait","scope":"rest","limit":200,"current":201,"reset":55}`}}}
		c := newTestClient(t, s, Config{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- listOrgCtx(ctx, c) }()
		time.Sleep(10 * time.Second)
		synctest.Wait()
		select {
		case err := <-done:
			t.Fatalf("returned before the reset: %v", err)
		default:
		}
		cancel()
		err := <-done
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
		if !strings.Contains(err.Error(), "waiting for the reset of Buildkite rate limit rest") {
			t.Errorf("error %q does not say what it was waiting for", err)
		}
		if n := len(s.requests()); n != 1 {
			t.Errorf("%d requests, want 1", n)
		}
	})
}

func TestConcurrentCallersShareTheBudget(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := &script{answers: []answer{
			{body: "[]", header: rlHeaders(150, 30, 0, 30)},
			{body: "[]", header: rlHeaders(150, 60, 49, 60)},
		}}
		c := newTestClient(t, s, Config{})
		if err := listOrg(c); err != nil {
			t.Fatal(err)
		}
		errs := make(chan error, 3)
		for range 3 {
			go func() { errs <- listOrg(c) }()
		}
		for range 3 {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		for i, r := range s.requests()[1:] {
			if d := r.at.Sub(s.requests()[0].at); d < 30*time.Second {
				t.Errorf("concurrent request %d went out %v after the budget was spent, before its reset", i, d)
			}
		}
	})
}

func TestCapResetIgnoresGarbage(t *testing.T) {
	for _, tc := range []struct {
		in, want time.Duration
	}{{-time.Second, 0}, {30 * time.Second, 30 * time.Second}, {10 * time.Hour, maxResetWait}} {
		if got := capReset(tc.in); got != tc.want {
			t.Errorf("capReset(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}
