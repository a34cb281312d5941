package backstage_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage/backstagetest"
)

// witness is a server that must never be asked anything; it counts requests and Authorization
// headers.
type witness struct {
	requests, authorized atomic.Int32
}

func (w *witness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	w.requests.Add(1)
	if r.Header.Get("Authorization") != "" {
		w.authorized.Add(1)
	}
	fmt.Fprint(rw, `{"items":[],"pageInfo":{}}`)
}

// wantAPIFailure checks a failed Load: one backstage_api problem whose message holds each of
// want, and no token anywhere.
func wantAPIFailure(t *testing.T, res backstage.Result, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Load succeeded: %+v", res)
	}
	if len(res.Problems) != 1 || res.Problems[0].Reason != backstage.ReasonBackstageAPI || len(res.Components) != 0 {
		t.Errorf("result = %+v, want one backstage_api problem and no components", res)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) || (len(res.Problems) > 0 && !strings.Contains(res.Problems[0].Message, w)) {
			t.Errorf("error %q / problem %v does not say %q", err, res.Problems, w)
		}
	}
	if strings.Contains(fmt.Sprint(err, res), testToken) {
		t.Errorf("the token leaked: %v %+v", err, res)
	}
}

func redirectTo(target string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.RequestURI(), http.StatusFound)
	})
}

func TestAPISourceRedirectToAnotherPort(t *testing.T) {
	var other witness
	otherSrv := httptest.NewServer(&other)
	defer otherSrv.Close()
	srv := httptest.NewServer(redirectTo(otherSrv.URL)) // same host, another port
	defer srv.Close()

	res, err := newAPISource(t, srv.URL, testToken, srv.Client()).Load(context.Background())
	wantAPIFailure(t, res, err, strings.TrimPrefix(otherSrv.URL, "http://"), "not followed")
	if n, a := other.requests.Load(), other.authorized.Load(); n != 0 || a != 0 {
		t.Errorf("the other server got %d requests, %d with an Authorization header; want none", n, a)
	}
}

func TestAPISourceRedirectHTTPSToHTTP(t *testing.T) {
	var plain witness
	plainSrv := httptest.NewServer(&plain)
	defer plainSrv.Close()
	tlsSrv := httptest.NewTLSServer(redirectTo(plainSrv.URL))
	defer tlsSrv.Close()

	res, err := newAPISource(t, tlsSrv.URL, testToken, tlsSrv.Client()).Load(context.Background())
	wantAPIFailure(t, res, err, "http://"+strings.TrimPrefix(plainSrv.URL, "http://"), "another scheme, host or port")
	if n := plain.requests.Load(); n != 0 {
		t.Errorf("the plain-HTTP server got %d requests; want none", n)
	}
}

// TestAPISourceSameOriginRedirect: a redirect within the same origin is followed with the token
// (a backend moved under a new path), a few times at most.
func TestAPISourceSameOriginRedirect(t *testing.T) {
	fake := backstagetest.New(testToken)
	fake.SetEntities(entity("shop", "acme/shop"))
	mux := http.NewServeMux()
	mux.Handle("/api/catalog/", fake)
	mux.HandleFunc("/old/api/catalog/entities/by-query", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/api/catalog/entities/by-query?"+r.URL.RawQuery, http.StatusMovedPermanently)
	})
	var loops atomic.Int32
	mux.HandleFunc("/loop/", func(w http.ResponseWriter, r *http.Request) {
		loops.Add(1)
		http.Redirect(w, r, r.URL.RequestURI(), http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	res, err := newAPISource(t, srv.URL+"/old", testToken, srv.Client()).Load(context.Background())
	if err != nil || len(res.Components) != 1 {
		t.Fatalf("same-origin redirect: %v, %+v", err, res)
	}
	res, err = newAPISource(t, srv.URL+"/loop", testToken, srv.Client()).Load(context.Background())
	wantAPIFailure(t, res, err, "redirected more than")
	if n := loops.Load(); n != backstage.MaxRedirects+1 {
		t.Errorf("%d requests to the redirect loop, want %d", n, backstage.MaxRedirects+1)
	}
}

// TestAPISourceEndlessCursor: a server that always has a next page is stopped at the page cap
// (one entity per page) or at the entity cap (full pages), without keeping every page.
func TestAPISourceEndlessCursor(t *testing.T) {
	for _, tc := range []struct {
		name     string
		perPage  int
		wantReqs int
		want     string
	}{
		{"one entity per page", 1, backstage.MaxPages, fmt.Sprintf("more than %d pages", backstage.MaxPages)},
		{"full pages", 200, backstage.MaxEntities/200 + 1, fmt.Sprintf("more than %d annotated entities", backstage.MaxEntities)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Small items (a Group is read and dropped), rendered once: the cost is the client's.
			items := strings.TrimSuffix(strings.Repeat(`{"apiVersion":"backstage.io/v1alpha1","kind":"Group","metadata":{"name":"g"}},`, tc.perPage), ",")
			var requests atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := requests.Add(1)
				fmt.Fprintf(w, `{"items":[%s],"pageInfo":{"nextCursor":"cursor-%d"}}`, items, n)
			}))
			defer srv.Close()
			res, err := newAPISource(t, srv.URL, testToken, srv.Client()).Load(context.Background())
			wantAPIFailure(t, res, err, tc.want)
			if n := int(requests.Load()); n != tc.wantReqs {
				t.Errorf("%d requests, want %d", n, tc.wantReqs)
			}
		})
	}
}

// TestAPISourceRepeatingCursor: a cursor seen before (A, B, A, ...) ends the load.
func TestAPISourceRepeatingCursor(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		next := "A"
		if r.URL.Query().Get("cursor") == "A" {
			next = "B"
		}
		fmt.Fprintf(w, `{"items":[{"kind":"Component"}],"pageInfo":{"nextCursor":%q}}`, next)
	}))
	defer srv.Close()
	res, err := newAPISource(t, srv.URL, testToken, srv.Client()).Load(context.Background())
	wantAPIFailure(t, res, err, "cursor on page 3 that it had returned before")
	if n := requests.Load(); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

// TestAPISourceHugeBody: a body larger than the page cap fails the load once the cap is read,
// and memory stays far below the body (it is decoded as it streams).
func TestAPISourceHugeBody(t *testing.T) {
	for _, tc := range []struct {
		name string
		head string
		fill string
	}{
		{"one huge value", `{"totalItems":"`, "aaaaaaaaaaaaaaaa"},
		{"endless white space inside items", `{"items":[`, "                "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var written atomic.Int64
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				io.WriteString(w, tc.head)
				chunk := []byte(strings.Repeat(tc.fill, 4096))
				for written.Load() < 4*backstage.MaxPageBytes {
					n, err := w.Write(chunk)
					written.Add(int64(n))
					if err != nil {
						return // the client hung up
					}
				}
			}))
			defer srv.Close()
			res, err := newAPISource(t, srv.URL, testToken, srv.Client()).Load(context.Background())
			wantAPIFailure(t, res, err, fmt.Sprintf("larger than %d MiB", backstage.MaxPageBytes>>20))
			if n := written.Load(); n >= 4*backstage.MaxPageBytes {
				t.Errorf("the client read the whole %d MiB body", n>>20)
			}
		})
	}
}

// TestAPISourceEchoedToken: a server that echoes the Authorization header into a field that fails
// to decode, into JSON that does not parse, into an error message or into an entity never gets
// the token into an error, a problem or a component.
func TestAPISourceEchoedToken(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  int
		body    string // %s is the Authorization header, JSON-quoted
		wantErr bool
	}{
		{"annotations of the wrong type", 200, `{"items":[{"kind":"Component","metadata":{"name":"x","annotations":%s}}],"pageInfo":{}}`, false},
		{"spec of the wrong type", 200, `{"items":[{"kind":%s,"spec":%s}],"pageInfo":{}}`, false},
		{"cursor of the wrong type", 200, `{"items":[],"pageInfo":{"nextCursor":{%s:1}}}`, true},
		{"not JSON", 200, `{"items":[%s %s]}`, true},
		{"unquoted", 200, `{"items":[Bearer ` + testToken + `]}`, true},
		{"items not a list", 200, `{"items":%s}`, true},
		{"error message", 500, `{"error":{"name":%s,"message":"bad header " + %s}}`, true},
		{"error message cut", 500, `{"error":{"name":"Error","message":"` + strings.Repeat("x", 190) + ` %s"}}`, true},
		{"entity name and annotation key", 200, `{"items":[{"apiVersion":"backstage.io/v1alpha1","kind":"Component","metadata":{"name":%s,"annotations":{"buildkite.com/pipeline-slug":"acme/x",%s:"v"}},"spec":{"owner":%s}}],"pageInfo":{}}`, false},
		{"misspelled key", 200, `{"items":[{"apiVersion":"backstage.io/v1alpha1","kind":"Component","metadata":{"name":"x","annotations":{"buildkite.com/pipline-slug":%s}}}],"pageInfo":{}}`, false},
		{"redirect host", 302, "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				auth := r.Header.Get("Authorization")
				if tc.status == 302 {
					http.Redirect(w, r, "http://"+strings.ToLower(testToken)+".example.com/", http.StatusFound)
					return
				}
				q, _ := json.Marshal(auth)
				if tc.name == "error message cut" {
					q = []byte(auth)
				}
				body := strings.ReplaceAll(tc.body, "%s", string(q))
				w.WriteHeader(tc.status)
				io.WriteString(w, body)
			}))
			defer srv.Close()
			res, err := newAPISource(t, srv.URL, testToken, srv.Client()).Load(context.Background())
			if (err != nil) != tc.wantErr {
				t.Errorf("err = %v, want an error: %v", err, tc.wantErr)
			}
			out := fmt.Sprintf("%v %+v", err, res)
			for _, leak := range []string{testToken, testToken[:12], strings.ToLower(testToken)} {
				if strings.Contains(out, leak) {
					t.Errorf("the token (%q) leaked: %s", leak, out)
				}
			}
			if len(res.Problems) == 0 && len(res.Components) == 0 {
				t.Errorf("nothing reported: %s", out)
			}
		})
	}
}

// hangingTransport answers nothing until the request's context ends.
type hangingTransport struct{}

func (hangingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	<-r.Context().Done()
	return nil, r.Context().Err()
}

// TestAPISourceRequestDeadline: a request gets a deadline even from a client without a timeout.
func TestAPISourceRequestDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		src := newAPISource(t, "http://backstage.test", testToken, &http.Client{Transport: hangingTransport{}})
		start := time.Now()
		res, err := src.Load(context.Background())
		wantAPIFailure(t, res, err, "did not answer page 1 in time")
		if d := time.Since(start); d != backstage.RequestTimeout {
			t.Errorf("gave up after %v, want %v", d, backstage.RequestTimeout)
		}
	})
}

// TestNewAPISourceKeepsCallersClient: the source's redirect policy is set on its own copy.
func TestNewAPISourceKeepsCallersClient(t *testing.T) {
	c := &http.Client{}
	newAPISource(t, "http://backstage.test", "", c)
	if c.CheckRedirect != nil {
		t.Error("NewAPISource modified the caller's http.Client")
	}
	_ = url.URL{}
}

// TestAPISourceBodyWithoutItems: a 200 whose JSON object has no "items" (a proxy's {} or a
// differently cased key, a fuzz finding) is not an empty catalog: taking it for one would drop
// every component without a word.
func TestAPISourceBodyWithoutItems(t *testing.T) {
	for _, body := range []string{`{}`, `{"Items":{}}`, `{"totalItems":0}`} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(body))
		}))
		res, err := newAPISource(t, srv.URL, testToken, srv.Client()).Load(context.Background())
		wantAPIFailure(t, res, err, `no "items" array`)
		srv.Close()
	}
}
