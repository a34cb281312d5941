package buildkitetest

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
)

// limiter counts requests in fixed 60-second windows (reference §9.1): one bucket per
// organization, shared by every token, and one per token (the per-user limit). Windows are the
// clock's minutes, so a window resets at hh:mm:00.
type limiter struct {
	mu    sync.Mutex
	orgs  map[string]*bucket
	users map[string]*bucket
}

type bucket struct {
	window int64 // Unix minute
	count  int
}

func minute(now time.Time) int64 {
	s := now.Unix()
	m := s / 60
	if s%60 < 0 {
		m--
	}
	return m
}

// resetIn is RateLimit-Reset: whole seconds, rounded up, until the current window ends.
func resetIn(now time.Time) int {
	end := time.Unix((minute(now)+1)*60, 0)
	return int((end.Sub(now) + time.Second - 1) / time.Second)
}

func (b *bucket) add(now time.Time) int {
	if w := minute(now); w != b.window {
		b.window, b.count = w, 0
	}
	b.count++
	return b.count
}

func getBucket(m map[string]*bucket, key string) *bucket {
	b, ok := m[key]
	if !ok {
		b = &bucket{}
		m[key] = b
	}
	return b
}

const (
	scopeOrg  = "rest"
	scopeUser = "rest_user"
	warning   = "You have exceeded your API rate limit."
)

// take counts one request of user (a token) against its bucket and, when org is not "" and the
// route is not /v2/access-token (which counts against the user only), the organization's bucket.
// /v2/builds spans organizations and counts against the user only. It sets the RateLimit headers
// and, when a limit is exceeded, answers 429 and reports false: the request must not be served.
func (l *limiter) take(resp *response, now time.Time, user, org, template string, cfg config) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	reset := resetIn(now)
	exceeded, current, limit := "", 0, 0
	if org != "" && template != RouteAccessToken {
		n := getBucket(l.orgs, org).add(now)
		setLimitHeaders(resp.header, "RateLimit-", scopeOrg, cfg.orgLimit, n, reset)
		if n > cfg.orgLimit {
			resp.header.Set("RateLimit-Warning", warning)
			exceeded, current, limit = scopeOrg, n, cfg.orgLimit
		}
	}
	n := getBucket(l.users, user).add(now)
	setLimitHeaders(resp.header, "RateLimit-User-", scopeUser, cfg.userLimit, n, reset)
	if n > cfg.userLimit {
		resp.header.Set("RateLimit-User-Warning", warning)
		if exceeded == "" {
			exceeded, current, limit = scopeUser, n, cfg.userLimit
		}
	}
	if exceeded == "" {
		return true
	}
	tooMany(resp, exceeded, limit, current, reset)
	return false
}

func setLimitHeaders(h http.Header, prefix, scope string, limit, count, reset int) {
	h.Set(prefix+"Scope", scope)
	h.Set(prefix+"Limit", strconv.Itoa(limit))
	h.Set(prefix+"Remaining", strconv.Itoa(max(0, limit-count)))
	h.Set(prefix+"Reset", strconv.Itoa(reset))
}

// tooMany writes the documented 429 body (reference §9.1).
func tooMany(resp *response, scope string, limit, current, reset int) {
	resp.json(http.StatusTooManyRequests, struct {
		Message string `json:"message"`
		Scope   string `json:"scope"`
		Limit   int    `json:"limit"`
		Current int    `json:"current"`
		Reset   int    `json:"reset"`
	}{
		Message: fmt.Sprintf("You have exceeded your rest API rate limit. Please wait %d seconds before making more requests.", reset),
		Scope:   scope, Limit: limit, Current: current, Reset: reset,
	})
}

// peek sets the headers of both buckets as they stand, without counting.
func (l *limiter) peek(h http.Header, now time.Time, user, org string, cfg config) {
	l.mu.Lock()
	defer l.mu.Unlock()
	reset := resetIn(now)
	count := func(m map[string]*bucket, key string) int {
		if b, ok := m[key]; ok && b.window == minute(now) {
			return b.count
		}
		return 0
	}
	if org != "" {
		setLimitHeaders(h, "RateLimit-", scopeOrg, cfg.orgLimit, count(l.orgs, org), reset)
	}
	if user != "" {
		setLimitHeaders(h, "RateLimit-User-", scopeUser, cfg.userLimit, count(l.users, user), reset)
	}
}

// Fault is a misbehaviour InjectFault queues for the next matching requests.
type Fault struct {
	Route          string        // route template (RouteOrgBuilds, …) to affect; "" = any request
	Status         int           // answer this status (5xx with an HTML body, like a proxy) instead of serving
	Times          int           // how many requests the fault affects; 0 means 1
	Delay          time.Duration // wait this long before answering (combines with the others)
	Truncate       bool          // serve normally but cut the body in the middle of the JSON
	RateLimitStorm bool          // answer 429 with the documented body and headers without serving
	Scope          string        // the storm's scope: "rest" (default) or "rest_user"
	// Trickle serves normally but sends the body one byte every Trickle, as a hostile or
	// overloaded server might, until the client gives up (the request's context ends).
	Trickle time.Duration
}

// InjectFault queues a fault. Faults apply in the order injected, before authentication, and
// only while the fault has Times left; a faulted request is recorded in Requests with the status
// it got. Status and RateLimitStorm requests are not counted against the rate limits.
func (f *Fake) InjectFault(fl Fault) {
	if fl.Times <= 0 {
		fl.Times = 1
	}
	f.faultMu.Lock()
	defer f.faultMu.Unlock()
	f.faults = append(f.faults, &fl)
}

// ClearFaults drops every queued fault.
func (f *Fake) ClearFaults() {
	f.faultMu.Lock()
	defer f.faultMu.Unlock()
	f.faults = nil
}

func (f *Fake) takeFault(template string) *Fault {
	f.faultMu.Lock()
	defer f.faultMu.Unlock()
	for i, fl := range f.faults {
		if fl.Route != "" && fl.Route != template {
			continue
		}
		c := *fl
		fl.Times--
		if fl.Times == 0 {
			f.faults = slices.Delete(f.faults, i, i+1)
		}
		return &c
	}
	return nil
}

// storm answers a RateLimitStorm fault: a 429 as if the scope's bucket were exhausted.
func (f *Fake) storm(r *http.Request, rt route, fl *Fault, resp *response) {
	now := f.now()
	user := ""
	if f.token(bearer(r)) != nil {
		user = bearer(r)
	}
	org := ""
	if rt.org != "" && f.hasOrg(rt.org) {
		org = rt.org
	}
	f.limits.peek(resp.header, now, user, org, f.cfg)
	reset := resetIn(now)
	scope, limit, prefix := scopeOrg, f.cfg.orgLimit, "RateLimit-"
	if fl.Scope == scopeUser {
		scope, limit, prefix = scopeUser, f.cfg.userLimit, "RateLimit-User-"
	}
	setLimitHeaders(resp.header, prefix, scope, limit, limit, reset)
	resp.header.Set(prefix+"Warning", warning)
	tooMany(resp, scope, limit, limit+1, reset)
}
