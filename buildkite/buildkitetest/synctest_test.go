package buildkitetest

import (
	"encoding/json"
	"io"
	"net/http"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// TestSynctestWindowReset runs the fake on its default clock inside a bubble, through the
// in-process transport: fake time passes only while every goroutine waits, so the 60-second window
// and an injected delay are exact and instant.
func TestSynctestWindowReset(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := New(WithUserLimit(3))
		f.SetToken(testToken, "read_builds")
		f.AddBuild("acme", "web", buildkite.Build{})
		c := &http.Client{Transport: f.Transport()}
		get := func() (*http.Response, map[string]any) {
			t.Helper()
			req, _ := http.NewRequest(http.MethodGet, InProcessBaseURL+"organizations/acme/builds", nil)
			req.Header.Set("Authorization", "Bearer "+testToken)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			var m map[string]any
			_ = json.Unmarshal(body, &m) // a list on 200; the error body on 429
			return resp, m
		}

		start := time.Now() // the bubble starts at 2000-01-01 00:00:00 UTC, a window boundary
		for range 3 {
			if resp, _ := get(); resp.StatusCode != http.StatusOK {
				t.Fatalf("status %d within the limit", resp.StatusCode)
			}
		}
		resp, body := get()
		if resp.StatusCode != http.StatusTooManyRequests || body["reset"] != 60.0 || resp.Header.Get("RateLimit-User-Reset") != "60" {
			t.Fatalf("4th request: status %d body %v", resp.StatusCode, body)
		}

		time.Sleep(59 * time.Second)
		if resp, body := get(); resp.StatusCode != http.StatusTooManyRequests || body["reset"] != 1.0 {
			t.Fatalf("after 59s: status %d body %v, want 429 with 1s to wait", resp.StatusCode, body)
		}
		time.Sleep(time.Second)
		resp, _ = get()
		if resp.StatusCode != http.StatusOK || resp.Header.Get("RateLimit-User-Remaining") != "2" {
			t.Fatalf("after 60s: status %d, user remaining %q", resp.StatusCode, resp.Header.Get("RateLimit-User-Remaining"))
		}

		// A delay fault costs exactly its fake duration.
		f.InjectFault(Fault{Delay: 10 * time.Second})
		before := time.Now()
		if resp, _ := get(); resp.StatusCode != http.StatusOK {
			t.Fatalf("delayed request: status %d", resp.StatusCode)
		}
		if d := time.Since(before); d != 10*time.Second {
			t.Errorf("delayed request took %v of fake time, want 10s", d)
		}
		if got := f.Requests()[len(f.Requests())-1].Time; !got.Equal(start.Add(60 * time.Second)) {
			t.Errorf("request logged at %v, want the bubble's clock when it arrived, %v", got, start.Add(60*time.Second))
		}
	})
}
