package buildkite

import (
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

const testToken = "bkua_0123456789abcdefSECRET"

// inProcess is an http.RoundTripper that serves requests with h in the calling goroutine, so
// that testing/synctest bubbles see the client durably blocked only on timers.
type inProcess struct{ h http.Handler }

func (t inProcess) RoundTrip(r *http.Request) (*http.Response, error) {
	if err := r.Context().Err(); err != nil {
		return nil, err
	}
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp, nil
}

// answer is one scripted response.
type answer struct {
	status int
	header map[string]string
	body   string
}

// seen is a request the script received.
type seen struct {
	path, rawQuery, auth, userAgent string
	at                              time.Time
}

// script serves answers in order, repeating the last one, and records requests.
type script struct {
	mu      sync.Mutex
	answers []answer
	reqs    []seen
}

func (s *script) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, seen{r.URL.Path, r.URL.RawQuery, r.Header.Get("Authorization"), r.Header.Get("User-Agent"), time.Now()})
	a := s.answers[min(len(s.reqs), len(s.answers))-1]
	s.mu.Unlock()
	for k, v := range a.header {
		w.Header().Set(k, v)
	}
	w.Header().Set("Content-Type", "application/json")
	if a.status == 0 {
		a.status = http.StatusOK
	}
	w.WriteHeader(a.status)
	_, _ = w.Write([]byte(a.body))
}

func (s *script) requests() []seen {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seen(nil), s.reqs...)
}

// newTestClient returns a client for h, in process, without local pacing unless cfg sets it.
func newTestClient(t *testing.T, h http.Handler, cfg Config) *Client {
	t.Helper()
	if cfg.BaseURL == "" {
		cfg.BaseURL = "http://buildkite.test/v2/"
	}
	if cfg.Token == "" {
		cfg.Token = secret.Secret(testToken)
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Transport: inProcess{h}}
	}
	if cfg.RequestsPerMinute == 0 {
		cfg.RequestsPerMinute = 1e9
	}
	if cfg.Logger == nil {
		cfg.Logger = log.NewNopLogger()
	}
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// newRegistry is a pedantic registry so that metric inconsistencies fail tests.
func newRegistry() *prometheus.Registry { return prometheus.NewPedanticRegistry() }

func assertNoToken(t *testing.T, what, s string) {
	t.Helper()
	if strings.Contains(s, testToken) || strings.Contains(s, "SECRET") {
		t.Errorf("%s contains the token: %s", what, s)
	}
}

func rlHeaders(orgRemaining, orgReset, userRemaining, userReset int) map[string]string {
	return map[string]string{
		"RateLimit-Scope":          "rest",
		"RateLimit-Limit":          "200",
		"RateLimit-Remaining":      itoa(orgRemaining),
		"RateLimit-Reset":          itoa(orgReset),
		"RateLimit-User-Scope":     "rest_user",
		"RateLimit-User-Limit":     "50",
		"RateLimit-User-Remaining": itoa(userRemaining),
		"RateLimit-User-Reset":     itoa(userReset),
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

// newLogfmt logs everything, debug included, into w.
func newLogfmt(w *testenv.LogBuffer) log.Logger {
	return log.NewLogfmtLogger(w)
}
