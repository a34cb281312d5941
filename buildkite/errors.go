package buildkite

import (
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
)

// Sentinel errors that *APIError matches with errors.Is, so callers can branch on the kind of
// failure without parsing texts.
var (
	// ErrUnauthorized: HTTP 401, the token is invalid, expired or revoked.
	ErrUnauthorized = errors.New("buildkite: unauthorized")
	// ErrForbidden: HTTP 403, usually a missing token scope (APIError.Scope names it when known).
	ErrForbidden = errors.New("buildkite: forbidden")
	// ErrNotFound: HTTP 404. Buildkite answers 404 both for slugs that do not exist and for
	// resources the token may not see, and does not say which part of the path was wrong.
	ErrNotFound = errors.New("buildkite: not found")
	// ErrTooDeep: HTTP 400 "Listing builds this deep is not supported". Callers should narrow
	// the query by time (created_from/created_to) instead of paging further.
	ErrTooDeep = errors.New("buildkite: listing builds this deep is not supported")
	// ErrRateLimited: HTTP 429 that persisted after the client waited and retried.
	ErrRateLimited = errors.New("buildkite: rate limited")
	// ErrStopPaging, returned by a visit function, ends a listing early; the List call then
	// returns nil.
	ErrStopPaging = errors.New("buildkite: stop paging")
	// ErrFilterIgnored: a whole page of a build listing lay outside the filters the request
	// asked for (finished_from, created_from, created_to, state[]), so the API, or something in
	// front of it, ignores them; the listing stops instead of paging on through history.
	// *FilterIgnoredError matches it with errors.Is.
	ErrFilterIgnored = errors.New("buildkite: the API ignores the listing's filters")
)

// tokenHelp tells a person how to get a working token; it is part of 401 and 403 errors.
const tokenHelp = "create one at https://buildkite.com/user/api-access-tokens with the scopes " +
	ScopeReadBuilds + " and " + ScopeReadPipelines + " for this organization"

// APIError is an HTTP error answer of the Buildkite API.
type APIError struct {
	// Endpoint is the route template, e.g. "/v2/organizations/{org}/builds".
	Endpoint string
	// StatusCode is the HTTP status.
	StatusCode int
	// Message is Buildkite's "message" (shortened, never containing the token).
	Message string
	// Scope is the token scope a 403 says is missing, when the message names it.
	Scope string
	// RateLimitScope is the rate-limit scope a 429 named: "rest" (organization) or
	// "rest_user" (token owner).
	RateLimitScope string
	// Resource describes what the request was about, e.g. `pipeline "acme/shop"`; used to say
	// what to check on a 404.
	Resource string // Method is the request's method when it was not GET (a write such as the rebuild).
	Method   string
}

// tooDeep reports whether a 400 is the deep-paging refusal (reference §1, §10).
func (e *APIError) tooDeep() bool {
	return e.StatusCode == http.StatusBadRequest &&
		strings.Contains(strings.ToLower(e.Message), "this deep")
}

// Is makes errors.Is(err, ErrNotFound) and friends work.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrUnauthorized:
		return e.StatusCode == http.StatusUnauthorized
	case ErrForbidden:
		return e.StatusCode == http.StatusForbidden
	case ErrNotFound:
		return e.StatusCode == http.StatusNotFound
	case ErrTooDeep:
		return e.tooDeep()
	case ErrRateLimited:
		return e.StatusCode == http.StatusTooManyRequests
	}
	return false
}

func (e *APIError) Error() string {
	var b strings.Builder
	method := e.Method
	if method == "" {
		method = http.MethodGet
	}
	fmt.Fprintf(&b, "%s %s: HTTP %d: ", method, e.Endpoint, e.StatusCode)
	switch {
	case e.StatusCode == http.StatusUnauthorized:
		b.WriteString("the Buildkite API token is invalid, expired or revoked; " + tokenHelp)
	case e.StatusCode == http.StatusForbidden && e.Scope != "" && e.Method != "":
		fmt.Fprintf(&b, "the Buildkite API token lacks the %s scope this %s needs; use a token that has it (a separate one: the exporter's own token stays read-only)", e.Scope, method)
	case e.StatusCode == http.StatusForbidden && e.Scope != "":
		fmt.Fprintf(&b, "the Buildkite API token lacks the %s scope; add it to the token or %s", e.Scope, tokenHelp)
	case e.StatusCode == http.StatusForbidden:
		b.WriteString("the Buildkite API token may not access this")
		if e.Resource != "" {
			b.WriteString(" " + e.Resource)
		}
		b.WriteString("; check the token's organization access and scopes (" + ScopeReadBuilds + ", " + ScopeReadPipelines + ")")
	case e.StatusCode == http.StatusNotFound:
		if e.Resource != "" {
			b.WriteString(e.Resource)
		} else {
			b.WriteString("the resource")
		}
		b.WriteString(" is unknown or not visible to this token (Buildkite answers the same for both); check the slugs and the token's organization access")
	case e.tooDeep():
		b.WriteString("listing builds this deep is not supported; narrow the query by time (created_from/created_to)")
	case e.StatusCode == http.StatusTooManyRequests:
		b.WriteString("rate limited")
		if e.RateLimitScope != "" {
			b.WriteString(" (scope " + e.RateLimitScope + ")")
		}
		b.WriteString(" even after waiting for the reset; lower the request rate or share of the budget other tools use")
	default:
		b.WriteString("unexpected answer")
	}
	if e.Message != "" {
		fmt.Fprintf(&b, " (Buildkite said: %q)", e.Message)
	}
	return b.String()
}

// missingScopeRE finds the scope in "Your access token doesn't have the read_suites scope".
var missingScopeRE = regexp.MustCompile(`(?i)\bthe ([a-z_]+) scope\b`)

func scopeFromMessage(msg string) string {
	if m := missingScopeRE.FindStringSubmatch(msg); m != nil {
		return strings.ToLower(m[1])
	}
	return ""
}

// TransportError is a request that got no HTTP answer (connection refused, timeout, reset).
// Its text names the endpoint and the host, never the URL's query or any header.
type TransportError struct {
	Endpoint string
	Host     string
	Err      error
	msg      string
}

func (e *TransportError) Error() string { return e.msg }
func (e *TransportError) Unwrap() error { return e.Err }

// DecodeError is an answer whose body could not be read as the expected JSON: truncated,
// malformed or of the wrong shape.
type DecodeError struct {
	Endpoint string
	Err      error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("GET %s: the response is not the expected JSON (truncated or malformed?): %v", e.Endpoint, e.Err)
}
func (e *DecodeError) Unwrap() error { return e.Err }

// ErrBodyTooLarge is wrapped by the error of a response larger than Config.MaxBodyBytes.
var ErrBodyTooLarge = errors.New("response body too large")

// RedirectError is an answer that redirected the request to another origin (scheme, host or
// port) than the base URL's, or redirected it more than a few times. The redirect is not
// followed: the Authorization header would go with it. Buildkite's REST API is not known to
// redirect API calls, so a redirect means a proxy in between or the configured API URL is wrong.
type RedirectError struct {
	Endpoint   string
	StatusCode int    // the redirect's status, e.g. 302; 0 when unknown
	From       string // the base URL's origin, scheme://host:port
	To         string // the redirect target's origin, scheme://host:port; never its path or query
	TooMany    bool   // same origin, but more than maxRedirects hops
	// Write is set for a redirected write (the rebuild's PUT), never followed: a 301 or 302
	// would turn it into a GET whose answer could pass for the write's.
	Write string
}

func (e *RedirectError) Error() string {
	what := "a redirect"
	if e.StatusCode != 0 {
		what = fmt.Sprintf("a redirect (HTTP %d)", e.StatusCode)
	}
	if e.Write != "" {
		return fmt.Sprintf("%s %s: refusing to follow %s to %s: a write is never redirected; Buildkite's API does not redirect API calls, "+
			"so a proxy in between or --buildkite.api-url is misconfigured", e.Write, e.Endpoint, what, e.To)
	}
	if e.TooMany {
		return fmt.Sprintf("GET %s: refusing to follow %s to %s: more than %d redirects; Buildkite's API does not redirect API calls, "+
			"so a proxy in between or --buildkite.api-url is misconfigured", e.Endpoint, what, e.To, maxRedirects)
	}
	return fmt.Sprintf("GET %s: refusing to follow %s from %s to %s: the API token would go to another scheme, host or port. "+
		"Buildkite's API does not redirect API calls, so a proxy in between or --buildkite.api-url is misconfigured; "+
		"set --buildkite.api-url to the address that answers itself (e.g. %s)", e.Endpoint, what, e.From, e.To, DefaultBaseURL)
}

// FilterIgnoredError is a page of a build listing whose builds all lay outside the requested
// window or states. It matches ErrFilterIgnored.
type FilterIgnoredError struct {
	Endpoint string
	Page     int
	Builds   int    // builds on the page, all outside
	Filter   string // the first filter a build of the page violated, e.g. "finished_from"
	Value    string // that filter's value as sent
}

func (e *FilterIgnoredError) Is(target error) bool { return target == ErrFilterIgnored }

func (e *FilterIgnoredError) Error() string {
	return fmt.Sprintf("GET %s: page %d: all %d builds lie outside the filter %s=%s that the request sent, so the API (or a proxy or "+
		"mirror in front of it) ignores its filters; stopped the listing rather than page through the whole history. "+
		"Check that --buildkite.api-url is the Buildkite REST API (%s) and that nothing in between drops the query string",
		e.Endpoint, e.Page, e.Builds, e.Filter, e.Value, DefaultBaseURL)
}
