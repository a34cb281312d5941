package buildkite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

// echoServer is a hostile server that writes the request's Authorization header into the body
// (or a header) of its answer, wherever body puts "%s", and the bare token where it puts "%t".
func echoServer(status int, body string, header map[string]string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		echo := strings.NewReplacer("%s", auth, "%t", strings.TrimPrefix(auth, "Bearer "))
		for k, v := range header {
			w.Header().Set(k, echo.Replace(v))
		}
		w.WriteHeader(status)
		_, _ = fmt.Fprint(w, echo.Replace(body))
	}
}

// errorChain renders err and everything it wraps, every way a caller might print it.
func errorChain(err error) string {
	var b strings.Builder
	for e := err; e != nil; e = errors.Unwrap(e) {
		fmt.Fprintf(&b, "%v | %+v | %#v\n", e, e, e)
	}
	return b.String()
}

func TestEchoedTokenNeverInErrors(t *testing.T) {
	long := strings.Repeat("x", maxMessageLen-10) // puts the echoed token across the cut
	getBuild := func(c *Client) error {
		_, err := c.GetBuild(context.Background(), "acme", "p", 1, GetBuildOptions{})
		return err
	}
	accessToken := func(c *Client) error { _, err := c.AccessToken(context.Background()); return err }
	for _, tc := range []struct {
		name   string
		status int
		body   string
		header map[string]string
		call   func(*Client) error
		want   any // the error type expected
	}{
		{"timestamp field of a listed build", 200, `[{"id":"b1","created_at":"%s"}]`, nil, listOrg, &DecodeError{}},
		{"number field holds the header", 200, `[{"id":"b1","number":"%s"}]`, nil, listOrg, &DecodeError{}},
		{"meta-data value of the wrong type", 200, `[{"id":"b1","meta_data":{"%s":{"a":"%s"}}}]`, nil, listOrg, &DecodeError{}},
		{"meta_data is a string", 200, `[{"id":"b1","meta_data":"%s"}]`, nil, listOrg, &DecodeError{}},
		{"jobs is an object", 200, `[{"id":"b1","jobs":{"%s":1}}]`, nil, listOrg, &DecodeError{}},
		{"a job's timestamp", 200, `[{"id":"b1","jobs":[{"id":"j","finished_at":"%s"}]}]`, nil, listOrg, &DecodeError{}},
		{"the page is a string", 200, `"%s"`, nil, listOrg, &DecodeError{}},
		{"trailing data", 200, `[] "%s"`, nil, listOrg, &DecodeError{}},
		{"build timestamp", 200, `{"id":"b1","finished_at":"%s"}`, nil, getBuild, &DecodeError{}},
		{"access token expiry", 200, `{"uuid":"u","scopes":[],"expires_at":"%s"}`, nil, accessToken, &DecodeError{}},
		{"error message cut after the token's start", 422, `{"message":"` + long + ` %s"}`, nil, listOrg, &APIError{}},
		{"error page cut after the token's start", 502, `<html>` + long + ` %s</html>`, nil, listOrg, &APIError{}},
		{"next link to a host named after the token", 200, `[]`,
			map[string]string{"Link": `<http://%t.example/v2/organizations/%t/builds?page=2>; rel="next"`}, listOrg, nil},
		{"next link that is not a URL", 200, `[]`, map[string]string{"Link": "<http://[%s/x>; rel=\"next\""}, listOrg, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(echoServer(tc.status, tc.body, tc.header))
			defer srv.Close()
			logs := &testenv.LogBuffer{}
			c := newTestClient(t, nil, Config{BaseURL: srv.URL + "/v2/", HTTPClient: srv.Client(), MaxRetries: -1, Logger: newLogfmt(logs)})
			err := tc.call(c)
			if err == nil {
				t.Fatal("no error")
			}
			switch tc.want.(type) {
			case *DecodeError:
				var de *DecodeError
				if !errors.As(err, &de) {
					t.Errorf("err = %v, want a *DecodeError", err)
				}
			case *APIError:
				var ae *APIError
				if !errors.As(err, &ae) {
					t.Errorf("err = %v, want an *APIError", err)
				}
			}
			chain := errorChain(err)
			assertNoToken(t, "error", chain)
			// Not even the part of the token after a cut.
			if strings.Contains(chain, testToken[len(testToken)/2:]) || strings.Contains(chain, testToken[:len(testToken)/2]) {
				t.Errorf("error contains part of the token: %s", chain)
			}
			assertNoToken(t, "logs", logs.String())
			t.Log(err)
		})
	}
}

func TestScrubIgnoresCaseAndFindsEveryCopy(t *testing.T) {
	c := newTestClient(t, &script{answers: []answer{{}}}, Config{})
	in := "a " + testToken + " b " + strings.ToLower(testToken) + " c " + strings.ToUpper(testToken) + " É"
	got := c.scrub(in)
	if want := "a <secret> b <secret> c <secret> É"; got != want {
		t.Errorf("scrub(%q) = %q, want %q", in, got, want)
	}
	if got := c.scrub("short"); got != "short" {
		t.Errorf("scrub(short) = %q", got)
	}
}
