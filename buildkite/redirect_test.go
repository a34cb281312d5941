package buildkite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// recorder is a hostile or innocent server that records who asked what, with which token.
type recorder struct {
	mu   sync.Mutex
	reqs []*http.Request
	next http.HandlerFunc
}

func (s *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.reqs = append(s.reqs, r.Clone(context.Background()))
	s.mu.Unlock()
	if s.next != nil {
		s.next(w, r)
		return
	}
	_, _ = w.Write([]byte(`[{"id":"stolen","number":666,"state":"passed"}]`))
}

func (s *recorder) requests() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.reqs...)
}

// redirectTo answers every request with status and Location: target + the request's path.
func redirectTo(status int, target func() string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Location", target()+r.URL.RequestURI())
		w.WriteHeader(status)
	}
}

func originOf(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return origin(u)
}

func TestRedirectToAnotherOriginIsRefused(t *testing.T) {
	thief := &recorder{}
	plain := httptest.NewServer(thief)
	defer plain.Close()
	tlsThief := &recorder{}
	tlsOther := httptest.NewTLSServer(tlsThief)
	defer tlsOther.Close()

	for _, tc := range []struct {
		name   string
		status int
		newAPI func() *httptest.Server
		target func(api *httptest.Server) string
		thief  *recorder
	}{
		{
			name: "another port of the same host", status: http.StatusFound,
			newAPI: func() *httptest.Server { return httptest.NewUnstartedServer(nil) },
			target: func(*httptest.Server) string { return plain.URL }, thief: thief,
		},
		{
			name: "https to http: the token in clear text", status: http.StatusMovedPermanently,
			newAPI: func() *httptest.Server { return httptest.NewUnstartedServer(nil) },
			target: func(*httptest.Server) string { return plain.URL }, thief: thief,
		},
		{
			name: "http to https on another port", status: http.StatusTemporaryRedirect,
			newAPI: func() *httptest.Server { return httptest.NewUnstartedServer(nil) },
			target: func(*httptest.Server) string { return tlsOther.URL }, thief: tlsThief,
		},
		{
			// localhost and 127.0.0.1 are one machine, one port, but another host name: Go would
			// drop the header itself, and the answer would still be taken as data.
			name: "another host, same port", status: http.StatusPermanentRedirect,
			newAPI: func() *httptest.Server { return httptest.NewUnstartedServer(nil) },
			target: func(api *httptest.Server) string {
				return strings.Replace(api.URL, "127.0.0.1", "localhost", 1)
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			api := tc.newAPI()
			self := &recorder{}
			self.next = func(w http.ResponseWriter, r *http.Request) {
				if r.Host != api.Listener.Addr().String() {
					// The redirect reached this server under another name: it would serve it.
					_, _ = w.Write([]byte(`[{"id":"stolen","number":666,"state":"passed"}]`))
					return
				}
				redirectTo(tc.status, func() string { return tc.target(api) })(w, r)
			}
			api.Config.Handler = self
			if strings.HasPrefix(tc.name, "https") {
				api.StartTLS()
			} else {
				api.Start()
			}
			defer api.Close()
			thief.reqs, tlsThief.reqs = nil, nil

			reg := newRegistry()
			callers := api.Client() // the caller's client: its TLS config must be kept, the client itself not changed
			c := newTestClient(t, nil, Config{BaseURL: api.URL + "/v2/", HTTPClient: callers, Registerer: reg})
			var visited int
			err := c.ListOrganizationBuilds(context.Background(), "acme", ListBuildsOptions{}, func(p []Build) error {
				visited += len(p)
				return nil
			})
			var re *RedirectError
			if !errors.As(err, &re) {
				t.Fatalf("err = %v, want a *RedirectError", err)
			}
			wantTo := originOf(t, tc.target(api))
			if re.To != wantTo || re.From != originOf(t, api.URL) || re.StatusCode != tc.status || re.Endpoint != routeOrgBuilds {
				t.Errorf("RedirectError = %+v, want %s → %s, status %d", re, originOf(t, api.URL), wantTo, tc.status)
			}
			for _, want := range []string{wantTo, "misconfigured", "--buildkite.api-url"} {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not contain %q", err, want)
				}
			}
			if strings.Contains(err.Error(), "/organizations/acme") {
				t.Errorf("error %q names the target's path; want its origin only", err)
			}
			assertNoToken(t, "error", fmt.Sprintf("%v %+v %#v", err, err, err))
			if visited != 0 {
				t.Errorf("%d builds of the redirect target taken as data", visited)
			}
			if tc.thief != nil {
				if n := len(tc.thief.requests()); n != 0 {
					t.Errorf("the redirect target got %d requests (Authorization %q)", n, tc.thief.requests()[0].Header.Get("Authorization"))
				}
			}
			if n := len(self.requests()); n != 1 {
				t.Errorf("the API got %d requests, want 1 (a refused redirect is not retried, nor followed under another name)", n)
			}
			if got := testutil.ToFloat64(c.metrics.requests.WithLabelValues(routeOrgBuilds, fmt.Sprint(tc.status))); got != 1 {
				t.Errorf("requests_total{code=%d} = %v, want 1", tc.status, got)
			}
			if callers.CheckRedirect != nil {
				t.Error("NewClient changed the caller's http.Client")
			}
		})
	}
}

func TestSameOriginRedirectsAreFollowedAFewTimes(t *testing.T) {
	var srv *httptest.Server
	s := &recorder{}
	s.next = func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/v2/organizations/acme/builds":
			// A proxy normalising the path, on the same origin.
			w.Header().Set("Location", srv.URL+"/v2/organizations/acme/builds/?"+r.URL.RawQuery)
			w.WriteHeader(http.StatusMovedPermanently)
		case strings.HasPrefix(r.URL.Path, "/v2/organizations/loop/"):
			w.Header().Set("Location", "/v2/organizations/loop/builds?n="+fmt.Sprint(len(s.requests())))
			w.WriteHeader(http.StatusFound)
		default:
			_, _ = w.Write([]byte(`[{"id":"b1","number":1,"state":"passed"}]`))
		}
	}
	srv = httptest.NewServer(s)
	defer srv.Close()
	callerRan := 0
	callers := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { callerRan++; return nil }}
	c := newTestClient(t, nil, Config{BaseURL: srv.URL + "/v2/", HTTPClient: callers})

	var got []Build
	if err := c.ListOrganizationBuilds(context.Background(), "acme", ListBuildsOptions{}, func(p []Build) error {
		got = append(got, p...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	reqs := s.requests()
	if len(got) != 1 || len(reqs) != 2 || reqs[1].Header.Get("Authorization") != "Bearer "+testToken {
		t.Errorf("same-origin redirect: %d builds, %d requests; want the build, and the token on the second request", len(got), len(reqs))
	}
	if callerRan != 1 {
		t.Errorf("the caller's CheckRedirect ran %d times, want 1: it must still run after the client's checks", callerRan)
	}

	s.mu.Lock()
	s.reqs = nil
	s.mu.Unlock()
	err := c.ListOrganizationBuilds(context.Background(), "loop", ListBuildsOptions{}, func([]Build) error { return nil })
	var re *RedirectError
	if !errors.As(err, &re) || !re.TooMany || !strings.Contains(err.Error(), "more than 3 redirects") {
		t.Fatalf("err = %v, want a RedirectError for too many redirects", err)
	}
	if n := len(s.requests()); n != 1+maxRedirects {
		t.Errorf("%d requests, want %d (the first and %d redirects followed)", n, 1+maxRedirects, maxRedirects)
	}
}

func TestOrigin(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://api.buildkite.com/v2/", "https://api.buildkite.com:443"},
		{"https://API.Buildkite.com:443/v2/", "https://api.buildkite.com:443"},
		{"http://api.buildkite.com/v2/", "http://api.buildkite.com:80"},
		{"http://127.0.0.1:8080/v2/", "http://127.0.0.1:8080"},
		{"http://[::1]:8080/v2/", "http://[::1]:8080"},
	} {
		if got := originOf(t, tc.in); got != tc.want {
			t.Errorf("origin(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

// A write is never redirected, not even on its own origin: a 302 would turn the rebuild's PUT
// into a GET whose answer (a build) could pass for the rebuild's.
func TestWriteIsNeverRedirected(t *testing.T) {
	var srv *httptest.Server
	s := &recorder{}
	s.next = func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			w.Header().Set("Location", srv.URL+"/v2/organizations/acme/pipelines/shop/builds/7")
			w.WriteHeader(http.StatusFound)
			return
		}
		_, _ = w.Write([]byte(`{"id":"b7","number":7,"state":"failed"}`))
	}
	srv = httptest.NewServer(s)
	defer srv.Close()
	c := newTestClient(t, nil, Config{BaseURL: srv.URL + "/v2/", HTTPClient: &http.Client{}})
	_, err := c.RebuildBuild(context.Background(), "acme", "shop", 7)
	var re *RedirectError
	if !errors.As(err, &re) || re.Write != http.MethodPut || !strings.Contains(err.Error(), "a write is never redirected") {
		t.Fatalf("err = %v, want a RedirectError for the write", err)
	}
	if reqs := s.requests(); len(reqs) != 1 {
		t.Errorf("%d requests, want the PUT only", len(reqs))
	}
}
