package buildkite

// Native fuzz targets for everything the client reads from the Buildkite API: build pages, single
// objects and their timestamps, the Link header, the RateLimit-* headers and 429 bodies, and error
// bodies. Seeds are under testdata/fuzz/<FuzzName>/; scripts/fuzz.sh (make fuzz) runs each target
// for a bounded time, and `go test` replays the seeds as ordinary tests.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"math"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzBudget bounds one input; generous, so that a loaded CI machine does not fail a run, yet an
// input that makes the client loop or stall is caught.
const fuzzBudget = 5 * time.Second

// fuzzToken is the token of the fuzzed clients; no error text may contain it.
const fuzzToken = "bkua_fuzz0123456789SECRET"

// FuzzBuildsPage serves the fuzz bytes as a page of GET /v2/organizations/{org}/builds from an
// httptest server and lists it through the exported client. Properties: no panic; bounded time; a
// listing that succeeds visited exactly one page holding exactly as many builds as the body's
// array had items (never more); one that fails did so with a *DecodeError and never visited; every
// decoded build is well formed (UTC timestamps, a pipeline slug without "/").
func FuzzBuildsPage(f *testing.F) {
	f.Add([]byte(`[]`))
	var (
		mu   sync.Mutex
		body []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		b := body
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	f.Cleanup(srv.Close)
	c, err := NewClient(Config{BaseURL: srv.URL + "/v2/", Token: fuzzToken, HTTPClient: srv.Client(),
		RequestsPerMinute: math.Inf(1), MaxRetries: -1})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		mu.Lock()
		body = data
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*fuzzBudget)
		defer cancel()
		var pages [][]Build
		start := time.Now()
		err := c.ListOrganizationBuilds(ctx, "acme", ListBuildsOptions{}, func(p []Build) error {
			pages = append(pages, p)
			return nil
		})
		if d := time.Since(start); d > fuzzBudget {
			t.Fatalf("listing took %v for %d bytes", d, len(data))
		}
		if err != nil {
			var derr *DecodeError
			if !errors.As(err, &derr) {
				t.Fatalf("a 200 answer failed with %T %v, want a *DecodeError", err, err)
			}
			if len(pages) != 0 {
				t.Errorf("a page that did not decode was visited: %d pages", len(pages))
			}
			if strings.Contains(err.Error(), fuzzToken) {
				t.Errorf("the token leaked into the error: %v", err)
			}
			return
		}
		var items []json.RawMessage
		if err := json.Unmarshal(data, &items); err != nil {
			t.Fatalf("the client decoded a page that is not a JSON array: %v", err)
		}
		if len(pages) != 1 || len(pages[0]) != len(items) {
			t.Fatalf("visited %d pages, the first with %d builds, from an array of %d items; want 1 page of %d",
				len(pages), fuzzLen(pages), len(items), len(items))
		}
		for i := range pages[0] {
			fuzzCheckBuild(t, &pages[0][i])
		}
	})
}

// FuzzDecodeObject decodes the fuzz bytes as the single objects of GET-a-build, GET-a-pipeline
// and GET /v2/access-token, through the same decode the client uses. Properties: no panic; a
// failure is a *DecodeError naming the endpoint; decoded objects are well formed; a decoded build
// (timestamps within RFC 3339's years) encodes, and that encoding decodes and encodes to itself,
// as the fake API's answers must.
func FuzzDecodeObject(f *testing.F) {
	f.Add([]byte(`{"id":"b1","number":1,"state":"passed","created_at":"2026-01-10T10:00:00.000Z"}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		var b Build
		if err := fuzzClient(t).decode(routeBuild, data, &b); err != nil {
			fuzzCheckDecodeError(t, err, routeBuild)
		} else {
			fuzzCheckBuild(t, &b)
			if fuzzInYearRange(&b) {
				first, err := json.Marshal(&b)
				if err != nil {
					t.Fatalf("a decoded build does not encode: %v", err)
				}
				var back Build
				if err := json.Unmarshal(first, &back); err != nil {
					t.Fatalf("an encoded build does not decode: %v\n%s", err, first)
				}
				if second, _ := json.Marshal(&back); !bytes.Equal(first, second) {
					t.Errorf("encoding is not stable:\n%s\n%s", first, second)
				}
			}
		}
		var p Pipeline
		if err := fuzzClient(t).decode(routePipeline, data, &p); err != nil {
			fuzzCheckDecodeError(t, err, routePipeline)
		} else {
			fuzzCheckTimestamps(t, "pipeline", p.CreatedAt, p.ArchivedAt)
		}
		var tok AccessToken
		if err := fuzzClient(t).decode(routeAccessToken, data, &tok); err != nil {
			fuzzCheckDecodeError(t, err, routeAccessToken)
		} else {
			fuzzCheckTimestamps(t, "access token", tok.CreatedAt, tok.ExpiresAt)
			for _, s := range tok.Scopes {
				if !tok.HasScope(s) {
					t.Errorf("HasScope(%q) is false for a listed scope", s)
				}
			}
		}
	})
}

// FuzzTimestamp feeds raw bytes to Timestamp.UnmarshalJSON, as the JSON decoder would pass a
// field's value. Properties: no panic; a decoded time is UTC (or zero); between years 1 and 9999
// it encodes as RFC 3339 with milliseconds and decodes back to itself truncated to milliseconds.
func FuzzTimestamp(f *testing.F) {
	for _, s := range []string{`"2015-05-09T21:05:59.874Z"`, `"2025-07-16 06:07:42 UTC"`, `null`, `""`, `"2026-01-10T11:00:00+01:00"`, `42`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var ts Timestamp
		if err := ts.UnmarshalJSON(data); err != nil {
			return
		}
		fuzzCheckTimestamps(t, "timestamp", ts)
		if y := ts.Year(); ts.IsZero() || y < 1 || y > 9999 {
			return // RFC 3339 has four-digit years; the API sends nothing else
		}
		enc, err := ts.MarshalJSON()
		if err != nil {
			t.Fatalf("MarshalJSON(%v): %v", ts.Time, err)
		}
		var back Timestamp
		if err := back.UnmarshalJSON(enc); err != nil {
			t.Fatalf("%s (from %q) does not decode: %v", enc, data, err)
		}
		if want := ts.Truncate(time.Millisecond); !back.Equal(want) {
			t.Errorf("%q decoded to %v, encoded as %s, decoded back to %v", data, ts.Time, enc, back.Time)
		}
	})
}

// FuzzNextURL parses Link header values (one per line of the input) the way paginate does, for
// the public API and for a base URL behind a path-prefixed proxy. Properties: no panic; findRel
// returns "" or text that stood between < and > in the input; nextURL never returns a URL on
// another scheme or host, with credentials, or outside the base path, also once a server has
// removed dot segments (%2e%2e included) from the path it receives.
func FuzzNextURL(f *testing.F) {
	f.Add(`<https://api.buildkite.com/v2/organizations/acme/builds?page=2>; rel="next"`)
	clients := map[string]*Client{}
	for _, base := range []string{DefaultBaseURL, "https://bk-proxy.example.com/buildkite/v2/"} {
		c, err := NewClient(Config{BaseURL: base, Token: fuzzToken})
		if err != nil {
			f.Fatal(err)
		}
		clients[base] = c
	}
	f.Fuzz(func(t *testing.T, header string) {
		values := strings.Split(header, "\n")
		rel := findRel(values, "next")
		if rel != "" && (!strings.Contains(header, "<"+rel+">") || strings.Contains(rel, ">")) {
			t.Errorf("findRel returned %q, which is not a <...> target of the input", rel)
		}
		for base, c := range clients {
			current := base + "organizations/acme/builds?per_page=100&page=1"
			next, err := c.nextURL(current, values)
			if err != nil || next == "" {
				if err == nil && rel != "" {
					t.Errorf("findRel found %q but nextURL returned nothing", rel)
				}
				continue
			}
			if strings.Contains(next, fuzzToken) {
				t.Errorf("next URL %q carries the token", next)
			}
			// What http.NewRequest will send: parse the string, not the *url.URL nextURL checked.
			u, err := url.Parse(next)
			if err != nil {
				t.Fatalf("next URL %q (base %s) does not parse: %v", next, base, err)
			}
			b := c.base
			if !strings.EqualFold(u.Scheme, b.Scheme) || !strings.EqualFold(u.Host, b.Host) || u.User != nil {
				t.Fatalf("next URL %q leaves %s://%s (from Link %q)", next, b.Scheme, b.Host, header)
			}
			if !strings.HasPrefix(u.Path, b.Path) {
				t.Fatalf("next URL %q is outside the base path %s (from Link %q)", next, b.Path, header)
			}
			// A server or proxy that decodes %2e%2e and removes dot segments serves this path.
			if served := path.Clean(u.Path) + "/"; !strings.HasPrefix(served, b.Path) {
				t.Fatalf("next URL %q is served as %s, outside the base path %s (from Link %q)", next, served, b.Path, header)
			}
		}
	})
}

// FuzzRateLimit feeds a 429 body and the RateLimit-* and Retry-After headers to the parsing and
// the budget the client keeps. Properties: no panic; the scope is one of the two buckets; no answer
// parks the client longer than maxResetWait (plus margin and jitter); a 429 that says when it
// resets makes the client wait that long, capped at maxResetWait; the error text of the body is
// valid UTF-8 and short.
func FuzzRateLimit(f *testing.F) {
	f.Add([]byte(`{"message":"You have exceeded your API rate limit.","scope":"rest_user","limit":50,"current":55,"reset":42}`),
		"0", "200", "12", "0", "50", "42", "", "rest_user")
	f.Fuzz(func(t *testing.T, body []byte, remaining, limit, reset, userRemaining, userLimit, userReset, retryAfter, userScope string) {
		h := http.Header{}
		for name, v := range map[string]string{
			"RateLimit-Remaining": remaining, "RateLimit-Limit": limit, "RateLimit-Reset": reset,
			"RateLimit-User-Remaining": userRemaining, "RateLimit-User-Limit": userLimit, "RateLimit-User-Reset": userReset,
			"Retry-After": retryAfter, "RateLimit-User-Scope": userScope,
		} {
			if v != "" {
				h.Set(name, v)
			}
		}
		const longest = maxResetWait + resetMargin + resetJitter
		now := time.Date(2026, 1, 10, 10, 0, 0, 0, time.UTC)

		// Every answer's headers go through observe.
		b := newBudget()
		b.observe(h, now, newClientMetrics())
		if scope, d := b.wait(now); d < 0 || d >= longest || (d > 0) != (scope == scopeOrg || scope == scopeUser) {
			t.Fatalf("after headers %v the client waits %v for scope %q; want [0, %v) and a bucket", h, d, scope, longest)
		}

		// A 429 also goes through parseRateLimited and exhausted.
		_, scope, rv, ok := parseRateLimited(body, h, now)
		wait := rv.d
		if scope != scopeOrg && scope != scopeUser {
			t.Fatalf("429 scope %q is neither %s nor %s", scope, scopeOrg, scopeUser)
		}
		if !ok {
			return
		}
		b.exhausted(scope, now, wait)
		got, d := b.wait(now)
		if d < 0 || d >= longest {
			t.Fatalf("after a 429 (body %q, headers %v) the client waits %v; want [0, %v)", body, h, d, longest)
		}
		if said, ok := fuzzSaidReset(body, h, scope); ok {
			if want := min(said, maxResetWait); want > 0 && d < want {
				t.Fatalf("the 429 (body %q, headers %v) said scope %s resets in %v; the client waits %v for %q, want at least %v",
					body, h, scope, said, d, got, want)
			}
		}

		msg := fuzzClient(t).errorMessage(body)
		if !utf8.ValidString(msg) || len(msg) > maxMessageLen+len("…") {
			t.Errorf("errorMessage(%q) = %q: not UTF-8 or longer than %d bytes", body, msg, maxMessageLen)
		}
		if s := scopeFromMessage(msg); s != "" && !fuzzScopeRE.MatchString(s) {
			t.Errorf("scopeFromMessage(%q) = %q, not a scope name", msg, s)
		}
	})
}

var fuzzScopeRE = regexp.MustCompile(`^[a-z_]+$`)

// fuzzSaidReset is the reset the 429 stated, worked out independently of parseRateLimited in the
// order it documents (the body's reset, else the scope's header, else Retry-After), in float
// seconds so that huge values stay huge instead of overflowing. The first source that holds a
// number of seconds decides, whole or not (".0", "1.5"): a negative one or NaN states no wait
// (ok, with 0), and a later source does not count then. A Retry-After date is left out.
func fuzzSaidReset(body []byte, h http.Header, scope string) (time.Duration, bool) {
	seconds := func(raw string) (time.Duration, bool) {
		raw = strings.TrimSpace(raw)
		if raw == "" {
			return 0, false
		}
		f, err := strconv.ParseFloat(raw, 64)
		switch {
		case err != nil && !errors.Is(err, strconv.ErrRange):
			return 0, false // not a number: the next source
		case math.IsNaN(f) || f < 0:
			return 0, true
		case f >= float64(math.MaxInt64)/float64(time.Second):
			return math.MaxInt64, true
		}
		return time.Duration(f * float64(time.Second)), true
	}
	var rl rateLimitBody
	// Errors are ignored as parseRateLimited ignores them: a field of the wrong type after
	// "reset" does not undo the reset decoded before it.
	_ = json.Unmarshal(body, &rl)
	if rl.Reset != nil {
		if d, ok := seconds(rl.Reset.String()); ok {
			return d, true
		}
	}
	for _, name := range []string{headerNames[scope].reset, "Retry-After"} {
		if d, ok := seconds(h.Get(name)); ok {
			return d, true
		}
	}
	return 0, false
}

// fuzzCheckBuild: timestamps are UTC, the derived pipeline slug is a path segment, Finished is
// consistent with the state, and nothing panics.
func fuzzCheckBuild(t *testing.T, b *Build) {
	t.Helper()
	fuzzCheckTimestamps(t, "build", b.CreatedAt, b.ScheduledAt, b.StartedAt, b.FinishedAt, b.FailingAt)
	if b.Creator != nil {
		fuzzCheckTimestamps(t, "creator", b.Creator.CreatedAt)
	}
	if b.Pipeline != nil {
		fuzzCheckTimestamps(t, "pipeline", b.Pipeline.CreatedAt, b.Pipeline.ArchivedAt)
	}
	for _, j := range b.Jobs {
		fuzzCheckTimestamps(t, "job", j.CreatedAt, j.ScheduledAt, j.RunnableAt, j.StartedAt, j.FinishedAt, j.UnblockedAt)
		if j.UnblockedBy != nil {
			fuzzCheckTimestamps(t, "unblocker", j.UnblockedBy.CreatedAt)
		}
	}
	if s := b.PipelineSlug(); strings.Contains(s, "/") {
		t.Errorf("PipelineSlug() = %q contains a /", s)
	}
	if b.Finished() && (b.Blocked || (b.State != StatePassed && b.State != StateFailed && b.State != StateCanceled &&
		b.State != StateSkipped && b.State != StateNotRun)) {
		t.Errorf("Finished() for state %q, blocked %v", b.State, b.Blocked)
	}
}

func fuzzCheckTimestamps(t *testing.T, what string, ts ...Timestamp) {
	t.Helper()
	for _, x := range ts {
		if !x.IsZero() && x.Location() != time.UTC {
			t.Errorf("%s timestamp %v is not UTC", what, x.Time)
		}
	}
}

func fuzzCheckDecodeError(t *testing.T, err error, endpoint string) {
	t.Helper()
	var derr *DecodeError
	if !errors.As(err, &derr) || derr.Endpoint != endpoint {
		t.Errorf("decode failed with %T %v, want a *DecodeError for %s", err, err, endpoint)
	}
}

// fuzzInYearRange: every timestamp of b lies in RFC 3339's years, the only ones that round-trip.
func fuzzInYearRange(b *Build) bool {
	ts := []Timestamp{b.CreatedAt, b.ScheduledAt, b.StartedAt, b.FinishedAt, b.FailingAt}
	if b.Creator != nil {
		ts = append(ts, b.Creator.CreatedAt)
	}
	if b.Pipeline != nil {
		ts = append(ts, b.Pipeline.CreatedAt, b.Pipeline.ArchivedAt)
	}
	for _, j := range b.Jobs {
		ts = append(ts, j.CreatedAt, j.ScheduledAt, j.RunnableAt, j.StartedAt, j.FinishedAt, j.UnblockedAt)
		if j.UnblockedBy != nil {
			ts = append(ts, j.UnblockedBy.CreatedAt)
		}
	}
	for _, x := range ts {
		if y := x.Year(); !x.IsZero() && (y < 1 || y > 9999) {
			return false
		}
	}
	return true
}

func fuzzLen(pages [][]Build) int {
	if len(pages) == 0 {
		return 0
	}
	return len(pages[0])
}

// fuzzClient is a client for the decoding functions, which scrub with its token.
func fuzzClient(t *testing.T) *Client {
	t.Helper()
	c, err := NewClient(Config{Token: "bkua_fuzz_0123456789", RequestsPerMinute: 60})
	if err != nil {
		t.Fatal(err)
	}
	return c
}
