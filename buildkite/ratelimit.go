package buildkite

import (
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// rateLimitWindow is Buildkite's rate-limit window (reference §9.1): no real reset is longer.
	rateLimitWindow = 60 * time.Second
	// maxResetWait caps how long one reset wait may be. Buildkite's window is 60 s; a larger
	// value is a garbled header or body and must not park the exporter for hours (nor, past
	// 292 years, overflow time.Duration into a negative wait).
	maxResetWait = 2 * time.Minute
	// resetMargin is added to every reset wait: Reset is given in whole seconds, so waiting
	// exactly that long can land just before the window turns over and earn another 429.
	resetMargin = 500 * time.Millisecond
	// resetJitter spreads the first requests after a reset so that several exporters (or
	// goroutines) sharing a budget do not all fire at the same instant.
	resetJitter = 500 * time.Millisecond
)

// bucket is what the latest answer said about one Buildkite rate-limit scope.
type bucket struct {
	known     bool
	limit     int
	remaining int
	resetAt   time.Time
}

// reserve is how many requests of a window the client leaves unused before it waits for the
// reset: a twentieth of the limit, at least 2. The organization's bucket is shared with every
// other tool and every open Backstage tab, so running it to zero would make them fail.
func (b bucket) reserve() int {
	return max(2, b.limit/20)
}

// budget tracks the organization and user buckets from response headers, shared by all
// goroutines using one Client.
type budget struct {
	mu      sync.Mutex
	buckets map[string]*bucket // scopeOrg, scopeUser
}

func newBudget() *budget {
	return &budget{buckets: map[string]*bucket{scopeOrg: {}, scopeUser: {}}}
}

// headerNames are the response headers of each scope (reference §1, §9.1).
var headerNames = map[string]struct{ limit, remaining, reset string }{
	scopeOrg:  {"RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset"},
	scopeUser: {"RateLimit-User-Limit", "RateLimit-User-Remaining", "RateLimit-User-Reset"},
}

func headerInt(h http.Header, name string) (int, bool) {
	v := strings.TrimSpace(h.Get(name))
	if v == "" {
		return 0, false
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false
	}
	return n, true
}

// resetValue is a wait an answer asked for: a RateLimit-*Reset or Retry-After header, or the
// reset of a 429 body, clamped into [0, maxResetWait].
type resetValue struct {
	d       time.Duration
	source  string // the header's name, or "429 body reset"
	raw     string // the value as sent
	clamped bool   // d is not what raw says: it was negative, NaN or too large
	ignored bool   // raw is not a number of seconds (nor, for Retry-After, a date); d is 0
}

// clampSeconds converts seconds to a wait in [0, maxResetWait]. It works on the float so that a
// huge value cannot overflow time.Duration; NaN, which says nothing, becomes one whole window.
func clampSeconds(f float64) (time.Duration, bool) {
	switch {
	case math.IsNaN(f):
		return rateLimitWindow, true
	case f < 0:
		return 0, true
	case f > maxResetWait.Seconds():
		return maxResetWait, true
	}
	return time.Duration(f * float64(time.Second)), false
}

// parseReset reads a value of seconds from source. ok is false when raw is empty.
func parseReset(source, raw string) (resetValue, bool) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return resetValue{}, false
	}
	v := resetValue{source: source, raw: raw}
	f, err := strconv.ParseFloat(raw, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) { // out of range is ±Inf, clamped below
		v.ignored = true
		return v, true
	}
	v.d, v.clamped = clampSeconds(f)
	return v, true
}

// parseRetryAfter reads Retry-After: seconds, or an HTTP date (RFC 9110 §10.2.3).
func parseRetryAfter(raw string, now time.Time) (resetValue, bool) {
	v, ok := parseReset("Retry-After", raw)
	if !ok || !v.ignored {
		return v, ok
	}
	if t, err := http.ParseTime(v.raw); err == nil {
		v.ignored = false
		v.d, v.clamped = clampSeconds(t.Sub(now).Seconds())
	}
	return v, true
}

// headerReset returns the reset of scope from h.
func headerReset(h http.Header, scope string) (resetValue, bool) {
	names, ok := headerNames[scope]
	if !ok {
		return resetValue{}, false
	}
	v, ok := parseReset(names.reset, h.Get(names.reset))
	return v, ok && !v.ignored
}

// observe records the headers of an answer received at now and updates the gauges. It returns
// the resets it had to clamp or ignore, for the caller to log.
func (b *budget) observe(h http.Header, now time.Time, m *clientMetrics) []resetValue {
	b.mu.Lock()
	defer b.mu.Unlock()
	var notes []resetValue
	for _, scope := range []string{scopeOrg, scopeUser} {
		names := headerNames[scope]
		remaining, okR := headerInt(h, names.remaining)
		if !okR {
			continue
		}
		bk := b.buckets[scope]
		bk.known = true
		bk.remaining = remaining
		if limit, ok := headerInt(h, names.limit); ok {
			bk.limit = limit
			m.rateLimit.WithLabelValues(scope).Set(float64(limit))
		}
		if reset, ok := parseReset(names.reset, h.Get(names.reset)); ok {
			if !reset.ignored {
				bk.resetAt = now.Add(reset.d)
			}
			if reset.clamped || reset.ignored {
				notes = append(notes, reset)
			}
		}
		m.rateRemaining.WithLabelValues(scope).Set(float64(remaining))
	}
	return notes
}

// exhausted records that scope answered 429 and resets after reset.
func (b *budget) exhausted(scope string, now time.Time, reset time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	bk, ok := b.buckets[scope]
	if !ok {
		return
	}
	bk.known = true
	bk.remaining = 0
	bk.resetAt = now.Add(capReset(reset))
}

// wait returns the scope whose budget is (nearly) spent and how long to wait for its reset;
// zero when a request may go now. The longest wait wins when both are spent.
func (b *budget) wait(now time.Time) (string, time.Duration) {
	b.mu.Lock()
	defer b.mu.Unlock()
	var scope string
	var d time.Duration
	for _, s := range []string{scopeUser, scopeOrg} {
		bk := b.buckets[s]
		if !bk.known || bk.remaining > bk.reserve() || !now.Before(bk.resetAt) {
			continue
		}
		if w := bk.resetAt.Sub(now); w > d {
			scope, d = s, w
		}
	}
	if d == 0 {
		return "", 0
	}
	return scope, d + resetMargin + rand.N(resetJitter)
}

func capReset(d time.Duration) time.Duration {
	return min(max(d, 0), maxResetWait)
}

// rateLimitBody is the JSON of a 429 (reference §9.1).
type rateLimitBody struct {
	Message string       `json:"message"`
	Scope   string       `json:"scope"`
	Limit   *json.Number `json:"limit"`
	Current *json.Number `json:"current"`
	Reset   *json.Number `json:"reset"`
}

// parseRateLimited works out which scope a 429 received at now is about and when it resets.
// Scope: the body's, else the bucket the headers say is empty, else the organization's. Reset:
// the body's, else that scope's header, else Retry-After, clamped into [0, maxResetWait]. ok is
// false when nothing says how long to wait; the caller then backs off exponentially.
func parseRateLimited(body []byte, h http.Header, now time.Time) (rl rateLimitBody, scope string, reset resetValue, ok bool) {
	_ = json.Unmarshal(body, &rl) // a 429 without a JSON body still has headers
	scope = normaliseScope(rl.Scope, h)
	if scope == "" {
		scope = scopeOrg
		for _, s := range []string{scopeUser, scopeOrg} {
			if rem, found := headerInt(h, headerNames[s].remaining); found && rem == 0 {
				scope = s
				break
			}
		}
	}
	if rl.Reset != nil {
		if v, found := parseReset("429 body reset", rl.Reset.String()); found && !v.ignored {
			return rl, scope, v, true
		}
	}
	if v, found := headerReset(h, scope); found {
		return rl, scope, v, true
	}
	if v, found := parseRetryAfter(h.Get("Retry-After"), now); found && !v.ignored {
		return rl, scope, v, true
	}
	return rl, scope, resetValue{}, false
}

// normaliseScope maps a 429 body's scope to one of our buckets: Buildkite sends "rest" and
// "rest_user"; the names the RateLimit-*-Scope headers carry are matched too.
func normaliseScope(scope string, h http.Header) string {
	switch {
	case scope == "":
		return ""
	case scope == scopeUser || scope == h.Get("RateLimit-User-Scope") || strings.HasSuffix(scope, "_user"):
		return scopeUser
	default:
		return scopeOrg
	}
}
