// Package buildkite is a small client for the Buildkite REST API: the build, pipeline and
// access-token endpoints the exporter needs, with pagination, a request budget that never
// provokes a 429 storm, retries and errors a person can act on. It knows nothing of Backstage
// and exports only its own request metrics.
package buildkite

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
)

// DefaultBaseURL is the public Buildkite REST API.
const DefaultBaseURL = "https://api.buildkite.com/v2/"

// DefaultRequestsPerMinute is the client's own pace. Buildkite allows a token's owner 50
// requests a minute across all of that person's tools, and the organization 200 a minute
// shared by every user and every open Backstage tab (the official plugin polls every second).
// Taking 30 leaves the owner's other tools room and keeps the exporter a small part of the
// organization's budget.
const DefaultRequestsPerMinute = 30

// Token scopes the exporter needs (reference §11).
const (
	ScopeReadBuilds    = "read_builds"
	ScopeReadPipelines = "read_pipelines"
)

const (
	defaultMaxRetries   = 4
	defaultMaxBodyBytes = 32 << 20
	// limiterBurst lets the first requests of a poll cycle leave together; the sustained rate
	// stays RequestsPerMinute.
	limiterBurst = 2
	// backoffBase and backoffCap bound the exponential backoff after 5xx and transport errors.
	backoffBase = time.Second
	backoffCap  = 30 * time.Second
	// maxMessageLen keeps error texts readable when a proxy answers with an HTML page.
	maxMessageLen = 200
)

// Config configures a Client. Only Token is required.
type Config struct {
	// BaseURL of the REST API; default DefaultBaseURL. Must end in "/v2/" ("/v2" is accepted).
	BaseURL string
	// Token is the API access token, sent as a bearer token and never logged.
	Token secret.Secret
	// RequestsPerMinute paces every request; default DefaultRequestsPerMinute. +Inf disables
	// the local pace (tests); Buildkite's headers are still obeyed.
	RequestsPerMinute float64
	// HTTPClient is optional; the default has connection and overall timeouts.
	HTTPClient *http.Client
	// UserAgent is sent with every request, e.g. version.ComponentUserAgent(...).
	UserAgent string
	// Logger is a go-kit logger; nil logs nothing.
	Logger log.Logger
	// Registerer receives the client's self-metrics; nil registers nothing.
	Registerer prometheus.Registerer
	// MaxRetries bounds the retries of one request after 429, 5xx, timeouts and connection
	// errors; 0 means 4, negative means none.
	MaxRetries int
	// MaxBodyBytes caps a response body; 0 means 32 MiB.
	MaxBodyBytes int64
}

// Client calls the Buildkite REST API. It is safe for concurrent use; all goroutines share one
// request budget.
type Client struct {
	base       *url.URL
	token      secret.Secret
	hc         *http.Client
	userAgent  string
	logger     log.Logger
	limiter    *rate.Limiter
	budget     *budget
	maxRetries int
	maxBody    int64
	metrics    *clientMetrics
	// maxPages is how deep ListBuildsSliced pages before it narrows its time window; lowered
	// when the API refuses a shallower page than MaxPagesPerSlice, so later listings stop first.
	maxPages atomic.Int32
}

// String and GoString keep the token out of fmt output: fmt would print the unexported field
// raw, since it cannot call its String method.
func (c *Client) String() string   { return "buildkite.Client(" + c.base.String() + ")" }
func (c *Client) GoString() string { return c.String() }

// NewClient validates cfg and returns a Client.
func NewClient(cfg Config) (*Client, error) {
	if cfg.Token.Reveal() == "" {
		return nil, errors.New("buildkite: no API token configured; " + tokenHelp)
	}
	if strings.ContainsAny(cfg.Token.Reveal(), " \t\r\n") {
		return nil, errors.New("buildkite: the API token contains white space; check the token file holds the token alone")
	}
	base, err := parseBaseURL(cfg.BaseURL)
	if err != nil {
		return nil, err
	}
	rpm := cfg.RequestsPerMinute
	switch {
	case rpm == 0:
		rpm = DefaultRequestsPerMinute
	case math.IsNaN(rpm) || rpm < 0:
		return nil, fmt.Errorf("buildkite: requests per minute must be positive, got %v", rpm)
	}
	limit := rate.Limit(rpm / 60)
	if math.IsInf(rpm, 1) {
		limit = rate.Inf
	}
	c := &Client{
		base:       base,
		token:      cfg.Token,
		hc:         cfg.HTTPClient,
		userAgent:  cfg.UserAgent,
		logger:     cfg.Logger,
		limiter:    rate.NewLimiter(limit, limiterBurst),
		budget:     newBudget(),
		maxRetries: cfg.MaxRetries,
		maxBody:    cfg.MaxBodyBytes,
		metrics:    newClientMetrics(),
	}
	c.maxPages.Store(MaxPagesPerSlice)
	if c.hc == nil {
		c.hc = defaultHTTPClient()
	}
	if c.logger == nil {
		c.logger = log.NewNopLogger()
	}
	switch {
	case c.maxRetries == 0:
		c.maxRetries = defaultMaxRetries
	case c.maxRetries < 0:
		c.maxRetries = 0
	}
	if c.maxBody <= 0 {
		c.maxBody = defaultMaxBodyBytes
	}
	if cfg.Registerer != nil {
		if err := c.metrics.register(cfg.Registerer); err != nil {
			return nil, fmt.Errorf("buildkite: registering client metrics: %w", err)
		}
	}
	return c, nil
}

func parseBaseURL(s string) (*url.URL, error) {
	if s == "" {
		s = DefaultBaseURL
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("buildkite: base URL %q is not an http(s) URL like %s", s, DefaultBaseURL)
	}
	if u.User != nil {
		return nil, fmt.Errorf("buildkite: base URL must not carry credentials; configure the token instead")
	}
	if strings.HasSuffix(u.Path, "/v2") {
		u.Path += "/"
	}
	if !strings.HasSuffix(u.Path, "/v2/") {
		return nil, fmt.Errorf("buildkite: base URL %q must end in /v2/, like %s", s, DefaultBaseURL)
	}
	u.RawQuery, u.Fragment, u.RawPath = "", "", ""
	return u, nil
}

func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 30 * time.Second
	t.MaxIdleConnsPerHost = 4
	return &http.Client{Transport: t, Timeout: 60 * time.Second}
}

// request is one logical API call; do may send it several times.
type request struct {
	endpoint string // route template, the metric label
	url      string // absolute
	resource string // for 404/403 texts
}

func (c *Client) newRequest(endpoint, resource, path, rawQuery string) request {
	u := c.base.String() + path
	if rawQuery != "" {
		u += "?" + rawQuery
	}
	return request{endpoint: endpoint, url: u, resource: resource}
}

// response is a successful answer, body read in full.
type response struct {
	body   []byte
	header http.Header
}

// do sends r, waiting for the budget first and retrying as documented on Config. It returns
// the body of a 2xx answer, an *APIError for other answers, or a transport or context error.
func (c *Client) do(ctx context.Context, r request) (*response, error) {
	for attempt := 0; ; attempt++ {
		if err := c.awaitBudget(ctx, r.endpoint); err != nil {
			return nil, err
		}
		resp, err := c.send(ctx, r)
		if err == nil {
			return resp, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("GET %s: %w", r.endpoint, ctx.Err())
		}
		var (
			apiErr  *APIError
			tErr    *TransportError
			reason  string
			backoff = c.backoff(attempt)
		)
		switch {
		case errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusTooManyRequests:
			// send recorded the reset in the budget; awaitBudget waits for it. Only when
			// nothing said how long to wait does the backoff apply.
			reason = "rate_limited"
			if _, d := c.budget.wait(time.Now()); d > 0 {
				backoff = 0
			}
		case errors.As(err, &apiErr) && apiErr.StatusCode >= 500:
			reason = "server_error"
		case errors.As(err, &tErr):
			reason = "transport"
		default:
			return nil, err // other 4xx, oversized or undecodable answers: retrying won't help
		}
		if attempt >= c.maxRetries {
			return nil, err
		}
		c.metrics.retries.WithLabelValues(r.endpoint, reason).Inc()
		level.Warn(c.logger).Log("msg", "Retrying Buildkite API request", "endpoint", r.endpoint,
			"reason", reason, "attempt", attempt+1, "max_retries", c.maxRetries, "backoff", backoff, "err", err)
		if backoff > 0 {
			if err := sleep(ctx, backoff); err != nil {
				return nil, fmt.Errorf("GET %s: backing off after %s: %w", r.endpoint, reason, err)
			}
		}
	}
}

// backoff is the capped exponential delay before retry attempt+1, with jitter in [d/2, d).
func (c *Client) backoff(attempt int) time.Duration {
	d := backoffCap
	if attempt < 10 {
		d = min(backoffBase<<attempt, backoffCap)
	}
	return d/2 + rand.N(d/2)
}

// awaitBudget blocks until a request may be sent: first until a (nearly) spent Buildkite
// bucket resets, then for the local pace.
func (c *Client) awaitBudget(ctx context.Context, endpoint string) error {
	if scope, d := c.budget.wait(time.Now()); d > 0 {
		c.metrics.waits.WithLabelValues(scope).Inc()
		c.metrics.waitSeconds.WithLabelValues(scope).Add(d.Seconds())
		level.Info(c.logger).Log("msg", "Buildkite rate limit nearly spent, waiting for its reset",
			"scope", scope, "wait", d.Round(time.Millisecond), "endpoint", endpoint)
		if err := sleep(ctx, d); err != nil {
			return fmt.Errorf("GET %s: waiting for the reset of Buildkite rate limit %s: %w", endpoint, scope, err)
		}
	}
	res := c.limiter.Reserve()
	if d := res.Delay(); d > 0 {
		c.metrics.waits.WithLabelValues(scopeLocal).Inc()
		c.metrics.waitSeconds.WithLabelValues(scopeLocal).Add(d.Seconds())
		if err := sleep(ctx, d); err != nil {
			res.Cancel()
			return fmt.Errorf("GET %s: waiting for the local request rate limit: %w", endpoint, err)
		}
	}
	return nil
}

// sleep waits for d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// send makes one HTTP request and classifies the answer.
func (c *Client) send(ctx context.Context, r request) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("GET %s: building request: %w", r.endpoint, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	req.Header.Set("Accept", "application/json")
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.metrics.requests.WithLabelValues(r.endpoint, "error").Inc()
		return nil, c.transportError(r, err, "request failed")
	}
	defer resp.Body.Close()
	body, err := c.readBody(resp)
	elapsed := time.Since(start)
	now := time.Now()
	c.budget.observe(resp.Header, now, c.metrics)
	if err != nil {
		if errors.Is(err, ErrBodyTooLarge) {
			c.metrics.requests.WithLabelValues(r.endpoint, strconv.Itoa(resp.StatusCode)).Inc()
			return nil, fmt.Errorf("GET %s: %w: more than %d bytes; narrow the query (per_page, time window) or raise the limit", r.endpoint, err, c.maxBody)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		// The connection broke mid-body: as transient as a failed connect.
		c.metrics.requests.WithLabelValues(r.endpoint, "error").Inc()
		return nil, c.transportError(r, err, "the response was cut short")
	}
	c.metrics.requests.WithLabelValues(r.endpoint, strconv.Itoa(resp.StatusCode)).Inc()
	c.metrics.duration.WithLabelValues(r.endpoint).Observe(elapsed.Seconds())
	level.Debug(c.logger).Log("msg", "Buildkite API request", "endpoint", r.endpoint, "code", resp.StatusCode, "duration", elapsed)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return &response{body: body, header: resp.Header}, nil
	}
	apiErr := &APIError{Endpoint: r.endpoint, StatusCode: resp.StatusCode, Resource: r.resource}
	apiErr.Message = c.scrub(errorMessage(body))
	switch resp.StatusCode {
	case http.StatusForbidden:
		apiErr.Scope = scopeFromMessage(apiErr.Message)
	case http.StatusTooManyRequests:
		rl, scope, reset, ok := parseRateLimited(body, resp.Header)
		apiErr.RateLimitScope = scope
		if ok {
			c.budget.exhausted(scope, now, reset)
		}
		level.Warn(c.logger).Log("msg", "Buildkite API rate limit exceeded", "endpoint", r.endpoint,
			"scope", scope, "reset", reset, "limit", numString(rl.Limit), "current", numString(rl.Current))
	}
	return nil, apiErr
}

func numString(n *json.Number) string {
	if n == nil {
		return ""
	}
	return n.String()
}

// readBody reads at most maxBody bytes, refusing larger answers early when Content-Length
// announces them.
func (c *Client) readBody(resp *http.Response) ([]byte, error) {
	if resp.ContentLength > c.maxBody {
		return nil, ErrBodyTooLarge
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, c.maxBody+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > c.maxBody {
		return nil, ErrBodyTooLarge
	}
	return body, nil
}

// errorMessage extracts {"message": "..."} from an error body, else a short snippet of it.
func errorMessage(body []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &m); err == nil && m.Message != "" {
		return shorten(m.Message)
	}
	return shorten(strings.Join(strings.Fields(string(bytes.ToValidUTF8(body, nil))), " "))
}

func shorten(s string) string {
	if len(s) <= maxMessageLen {
		return s
	}
	cut := maxMessageLen
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// scrub removes the token from s, in case an answer or a transport echoes the request.
func (c *Client) scrub(s string) string {
	if t := c.token.Reveal(); t != "" {
		s = strings.ReplaceAll(s, t, c.token.String())
	}
	return s
}

// transportError describes a request that got no answer without the URL's query or headers;
// *url.Error already drops headers, and the message is scrubbed as a second line of defence.
func (c *Client) transportError(r request, err error, kind string) *TransportError {
	inner := err
	var uErr *url.Error
	if errors.As(err, &uErr) {
		inner = uErr.Err
	}
	var nErr net.Error
	if errors.As(err, &nErr) && nErr.Timeout() {
		kind = "request timed out"
	}
	return &TransportError{
		Endpoint: r.endpoint,
		Host:     c.base.Host,
		Err:      err,
		msg:      c.scrub(fmt.Sprintf("GET %s on %s: %s: %v", r.endpoint, c.base.Host, kind, inner)),
	}
}

// decode unmarshals a successful answer into v, naming the endpoint on failure.
func decode(endpoint string, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return &DecodeError{Endpoint: endpoint, Err: err}
	}
	return nil
}
