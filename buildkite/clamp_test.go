package buildkite

import (
	"math"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

func TestParseResetClamps(t *testing.T) {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		raw              string
		want             time.Duration
		clamped, ignored bool
	}{
		{"42", 42 * time.Second, false, false},
		{"0", 0, false, false},
		{"7.5", 7500 * time.Millisecond, false, false},
		{"1e12", maxResetWait, true, false},                 // once logged as -2562047h47m16s
		{"99999999999999999999", maxResetWait, true, false}, // beyond int64
		{"1e400", maxResetWait, true, false},                // beyond float64
		{"Inf", maxResetWait, true, false},
		{"-5", 0, true, false},
		{"-1e400", 0, true, false},
		{"NaN", rateLimitWindow, true, false},
		{"soon", 0, false, true},
	} {
		v, ok := parseReset("RateLimit-Reset", tc.raw)
		if !ok || v.d != tc.want || v.clamped != tc.clamped || v.ignored != tc.ignored {
			t.Errorf("parseReset(%q) = %+v, %v; want %v clamped=%v ignored=%v", tc.raw, v, ok, tc.want, tc.clamped, tc.ignored)
		}
	}
	if _, ok := parseReset("RateLimit-Reset", " "); ok {
		t.Error("an empty header parsed")
	}
	for _, tc := range []struct {
		raw     string
		want    time.Duration
		clamped bool
	}{
		{"30", 30 * time.Second, false},
		{now.Add(20 * time.Second).Format(httpTimeFormat), 20 * time.Second, false},
		{now.Add(1000 * time.Hour).Format(httpTimeFormat), maxResetWait, true},
		{now.Add(-time.Hour).Format(httpTimeFormat), 0, true},
	} {
		v, ok := parseRetryAfter(tc.raw, now)
		if !ok || v.ignored || v.d != tc.want || v.clamped != tc.clamped {
			t.Errorf("parseRetryAfter(%q) = %+v; want %v clamped=%v", tc.raw, v, tc.want, tc.clamped)
		}
	}
	if d, c := clampSeconds(math.MaxFloat64); d != maxResetWait || !c {
		t.Errorf("clampSeconds(MaxFloat64) = %v, %v", d, c)
	}
}

const httpTimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// TestHostileResetsAreClampedAndWaited: every place a wait comes from, with values that are
// huge, negative or NaN. The wait is bounded by maxResetWait and never skipped by an overflow,
// and the log says what was clamped.
func TestHostileResetsAreClampedAndWaited(t *testing.T) {
	ok := answer{body: "[]", header: rlHeaders(199, 60, 49, 60)}
	for _, tc := range []struct {
		name       string
		first      answer
		source     string
		value      string
		minW, maxW time.Duration // gap between the two requests
	}{
		{
			name:   "429 body reset 1e12",
			first:  answer{status: 429, header: rlHeaders(150, 30, 0, 30), body: `{"message":"wait","scope":"rest_user","limit":50,"current":51,"reset":1e12}`},
			source: "429 body reset", value: "1e12", minW: maxResetWait, maxW: maxResetWait + time.Second,
		},
		{
			name:   "429 body reset beyond float64",
			first:  answer{status: 429, header: rlHeaders(0, 30, 40, 30), body: `{"message":"wait","scope":"rest","reset":1e400}`},
			source: "429 body reset", value: "1e400", minW: maxResetWait, maxW: maxResetWait + time.Second,
		},
		{
			// Negative says nothing usable: the exponential backoff applies, not a zero wait
			// that would retry at once.
			name:   "429 body reset negative",
			first:  answer{status: 429, header: map[string]string{}, body: `{"message":"wait","scope":"rest","reset":-5}`},
			source: "429 body reset", value: "-5", minW: 500 * time.Millisecond, maxW: time.Second,
		},
		{
			name:   "429 RateLimit-User-Reset huge",
			first:  answer{status: 429, header: map[string]string{"RateLimit-User-Remaining": "0", "RateLimit-User-Reset": "99999999999999999999"}, body: `{"message":"wait","scope":"rest_user"}`},
			source: "RateLimit-User-Reset", value: "99999999999999999999", minW: maxResetWait, maxW: maxResetWait + time.Second,
		},
		{
			name:   "429 Retry-After huge",
			first:  answer{status: 429, header: map[string]string{"Retry-After": "86400"}, body: ``},
			source: "Retry-After", value: "86400", minW: maxResetWait, maxW: maxResetWait + time.Second,
		},
		{
			name:   "RateLimit-Reset 1e12 on an answer that spent the budget",
			first:  answer{body: "[]", header: map[string]string{"RateLimit-Limit": "200", "RateLimit-Remaining": "1", "RateLimit-Reset": "1e12"}},
			source: "RateLimit-Reset", value: "1e12", minW: maxResetWait, maxW: maxResetWait + time.Second,
		},
		{
			name:   "RateLimit-User-Reset NaN: one window",
			first:  answer{body: "[]", header: map[string]string{"RateLimit-User-Limit": "50", "RateLimit-User-Remaining": "0", "RateLimit-User-Reset": "NaN"}},
			source: "RateLimit-User-Reset", value: "NaN", minW: rateLimitWindow, maxW: rateLimitWindow + time.Second,
		},
		{
			name:   "RateLimit-Reset negative: the window is over",
			first:  answer{body: "[]", header: map[string]string{"RateLimit-Limit": "200", "RateLimit-Remaining": "0", "RateLimit-Reset": "-30"}},
			source: "RateLimit-Reset", value: "-30", minW: 0, maxW: 0,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s := &script{answers: []answer{tc.first, ok}}
				logs := &testenv.LogBuffer{}
				c := newTestClient(t, s, Config{Logger: newLogfmt(logs)})
				// A 429 is retried within one call; after a fine answer the wait comes before the
				// next call's request.
				for len(s.requests()) < 2 {
					if err := listOrg(c); err != nil {
						t.Fatal(err)
					}
				}
				reqs := s.requests()
				if len(reqs) < 2 {
					t.Fatalf("%d requests", len(reqs))
				}
				if g := gap(reqs, 0); g < tc.minW || g > tc.maxW {
					t.Errorf("waited %v, want within [%v, %v]", g, tc.minW, tc.maxW)
				}
				out := logs.String()
				if !strings.Contains(out, `msg="Clamped a Buildkite rate-limit reset outside the sane range`) ||
					!strings.Contains(out, `source="`+tc.source+`"`) && !strings.Contains(out, "source="+tc.source) ||
					!strings.Contains(out, "value="+tc.value) {
					t.Errorf("log does not say that %s=%s was clamped:\n%s", tc.source, tc.value, out)
				}
				if strings.Contains(out, "-2562047h") {
					t.Errorf("an overflowed duration reached the log:\n%s", out)
				}
			})
		})
	}
}

func TestGarbledResetLoggedOncePerValue(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		bad := answer{body: "[]", header: map[string]string{"RateLimit-Limit": "200", "RateLimit-Remaining": "150", "RateLimit-Reset": "1e12"}}
		worse := answer{body: "[]", header: map[string]string{"RateLimit-Limit": "200", "RateLimit-Remaining": "150", "RateLimit-Reset": "soon"}}
		s := &script{answers: []answer{bad, bad, bad, worse, worse}}
		logs := &testenv.LogBuffer{}
		c := newTestClient(t, s, Config{Logger: newLogfmt(logs)})
		for range 5 {
			if err := listOrg(c); err != nil {
				t.Fatal(err)
			}
		}
		out := logs.String()
		if n := strings.Count(out, "Clamped a Buildkite rate-limit reset"); n != 1 {
			t.Errorf("clamping logged %d times for three equal headers, want once:\n%s", n, out)
		}
		if n := strings.Count(out, "Ignoring a Buildkite rate-limit reset that is not a number"); n != 1 {
			t.Errorf("a non-number logged %d times, want once:\n%s", n, out)
		}
	})
}
