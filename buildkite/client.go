// Package buildkite is a small client for the Buildkite REST API: the build, pipeline and
// access-token endpoints the exporter needs, with pagination, a request budget that never
// provokes a 429 storm, retries and errors a person can act on. It knows nothing of Backstage
// and exports only its own request metrics.
//
// Every answer is treated as hostile input. Memory is bounded by what the client keeps, not by
// what an answer claims: pages are streamed and held to the page size asked for, and builds to
// MaxMetaDataKeys meta-data keys and MaxJobsPerBuild jobs, each drop counted in
// buildkite_exporter_api_dropped_total. Builds outside a listing's filters are dropped, and an
// API that ignores the filters stops the listing (ErrFilterIgnored). Every request has a
// deadline, body included (Config.RequestTimeout); redirects to another scheme, host or port are
// refused (RedirectError), so the token never leaves the configured origin; rate-limit resets are
// clamped to maxResetWait; and the token is scrubbed from every error and log line, decoding
// errors included.
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
	"sync"
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
	// ScopeWriteBuilds is what a rebuild needs; the exporter itself never does.
	ScopeWriteBuilds = "write_builds"
)

// DefaultRequestTimeout bounds one HTTP request, body included (Config.RequestTimeout).
const DefaultRequestTimeout = 60 * time.Second

const (
	defaultMaxRetries   = 4
	defaultMaxBodyBytes = 32 << 20
	// maxRedirects is how many same-origin redirects one request follows. Buildkite's API is not
	// known to redirect API calls at all; a few hops allow a proxy that normalises paths.
	maxRedirects = 3
	// limiterBurst lets the first requests of a poll cycle leave together; the sustained rate
	// stays RequestsPerMinute.
	limiterBurst = 2
	// backoffBase and backoffCap bound the exponential backoff after 5xx and transport errors.
	backoffBase = time.Second
	backoffCap  = 30 * time.Second
	// maxMessageLen keeps error texts readable when a proxy answers with an HTML page.
	maxMessageLen = 200
	// maxDecodeErrorLen bounds the text of a decode error, which may quote a hostile value.
	maxDecodeErrorLen = 400
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
	// RequestTimeout bounds each HTTP request from sending it to the last byte of its body, so an
	// answer that trickles cannot hold a poll; 0 means DefaultRequestTimeout (60 s). Rate-limit
	// waits and backoff between retries are not included; each retry gets its own deadline.
	RequestTimeout time.Duration
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
	timeout    time.Duration
	metrics    *clientMetrics
	clock      serverClock
	// clampedMu guards clampedLogged: the last clamped or ignored value logged per source, so a
	// garbled header is logged when it changes, not on every answer.
	clampedMu     sync.Mutex
	clampedLogged map[string]string
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
	if cfg.RequestTimeout < 0 {
		return nil, fmt.Errorf("buildkite: request timeout must not be negative, got %v", cfg.RequestTimeout)
	}
	limit := rate.Limit(rpm / 60)
	if math.IsInf(rpm, 1) {
		limit = rate.Inf
	}
	c := &Client{
		base:       base,
		token:      cfg.Token,
		userAgent:  cfg.UserAgent,
		logger:     cfg.Logger,
		limiter:    rate.NewLimiter(limit, limiterBurst),
		budget:     newBudget(),
		maxRetries: cfg.MaxRetries,
		maxBody:    cfg.MaxBodyBytes,
		timeout:    cfg.RequestTimeout,
		metrics:    newClientMetrics(),
	}
	c.maxPages.Store(MaxPagesPerSlice)
	hc := cfg.HTTPClient
	if hc == nil {
		hc = defaultHTTPClient()
	}
	c.hc = c.guardRedirects(hc)
	if c.timeout == 0 {
		c.timeout = DefaultRequestTimeout
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

// defaultHTTPClient has connection timeouts; the overall bound is the per-request deadline
// (Config.RequestTimeout), which send sets on every request's context.
func defaultHTTPClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	t.TLSHandshakeTimeout = 10 * time.Second
	t.ResponseHeaderTimeout = 30 * time.Second
	t.MaxIdleConnsPerHost = 4
	return &http.Client{Transport: t}
}

// guardRedirects returns a copy of hc (the caller's client is not changed) whose CheckRedirect
// refuses every redirect to another scheme, host or port than the base URL's, before the
// request, and the token with it, leaves; same-origin redirects are followed at most
// maxRedirects times. A CheckRedirect of the caller's still runs after these checks.
func (c *Client) guardRedirects(hc *http.Client) *http.Client {
	guarded := *hc
	callers := hc.CheckRedirect
	guarded.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := c.checkRedirect(req, via); err != nil {
			return err
		}
		if callers != nil {
			return callers(req, via)
		}
		return nil
	}
	return &guarded
}

func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	status := 0
	if req.Response != nil {
		status = req.Response.StatusCode
	}
	from, to := origin(c.base), origin(req.URL)
	switch {
	case from != to || req.URL.User != nil:
		return &RedirectError{StatusCode: status, From: c.scrub(from), To: c.scrub(to)}
	case len(via) > 0 && via[0].Method != http.MethodGet:
		return &RedirectError{StatusCode: status, To: c.scrub(to), Write: via[0].Method}
	case len(via) > maxRedirects:
		return &RedirectError{StatusCode: status, From: c.scrub(from), To: c.scrub(to), TooMany: true}
	}
	return nil
}

// origin is scheme://host:port of u, lower case, with the scheme's default port made explicit,
// so that https://API.buildkite.com and https://api.buildkite.com:443 are one origin.
func origin(u *url.URL) string {
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	if port == "" {
		switch scheme {
		case "http":
			port = "80"
		case "https":
			port = "443"
		}
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port)
}

// request is one logical API call; do may send it several times.
type request struct {
	// method is GET when empty. Only GETs are retried after an answer that may have been acted
	// on (5xx, a broken connection): a write (the rebuild's PUT) is retried only after a 429,
	// which Buildkite answers before doing anything, so that it never happens twice.
	method   string
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

// verb is the request's HTTP method.
func (r request) verb() string {
	if r.method == "" {
		return http.MethodGet
	}
	return r.method
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
			return nil, fmt.Errorf("%s %s: %w", r.verb(), r.endpoint, ctx.Err())
		}
		var (
			apiErr  *APIError
			tErr    *TransportError
			reason  string
			backoff = c.backoff(attempt)
		)
		switch {
		case r.verb() != http.MethodGet && !(errors.As(err, &apiErr) && apiErr.StatusCode == http.StatusTooManyRequests):
			return nil, err // a write that may have been acted on: never twice
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

// send makes one HTTP request, within the per-request deadline, and classifies the answer.
func (c *Client) send(parent context.Context, r request) (*response, error) {
	ctx, cancel := context.WithTimeout(parent, c.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, r.verb(), r.url, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: building request: %w", r.verb(), r.endpoint, err)
	}
	req.Header.Set("Authorization", "Bearer "+c.token.Reveal())
	req.Header.Set("Accept", "application/json")
	if c.userAgent != "" {
		req.Header.Set("User-Agent", c.userAgent)
	}
	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		var redirect *RedirectError
		switch {
		case errors.As(err, &redirect):
			// Do returns the redirect answer, body closed, with CheckRedirect's error.
			code := "error"
			if resp != nil {
				code = strconv.Itoa(resp.StatusCode)
			}
			c.metrics.requests.WithLabelValues(r.endpoint, code).Inc()
			e := *redirect
			e.Endpoint = r.endpoint
			return nil, &e
		case parent.Err() != nil:
			return nil, parent.Err()
		}
		c.metrics.requests.WithLabelValues(r.endpoint, "error").Inc()
		return nil, c.transportError(ctx, r, err, "request failed")
	}
	defer resp.Body.Close()
	c.clock.observe(resp.Header)
	body, err := c.readBody(resp)
	elapsed := time.Since(start)
	now := time.Now()
	for _, n := range c.budget.observe(resp.Header, now, c.metrics) {
		c.logClamped(n, r.endpoint)
	}
	if err != nil {
		if errors.Is(err, ErrBodyTooLarge) {
			c.metrics.requests.WithLabelValues(r.endpoint, strconv.Itoa(resp.StatusCode)).Inc()
			return nil, fmt.Errorf("GET %s: %w: more than %d bytes; narrow the query (per_page, time window) or raise the limit", r.endpoint, err, c.maxBody)
		}
		if parent.Err() != nil {
			return nil, parent.Err()
		}
		// The connection broke mid-body, or the body trickled past the deadline: as transient as
		// a failed connect.
		c.metrics.requests.WithLabelValues(r.endpoint, "error").Inc()
		return nil, c.transportError(ctx, r, err, "the response was cut short")
	}
	c.metrics.requests.WithLabelValues(r.endpoint, strconv.Itoa(resp.StatusCode)).Inc()
	c.metrics.duration.WithLabelValues(r.endpoint).Observe(elapsed.Seconds())
	level.Debug(c.logger).Log("msg", "Buildkite API request", "endpoint", r.endpoint, "code", resp.StatusCode, "duration", elapsed)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return &response{body: body, header: resp.Header}, nil
	}
	apiErr := &APIError{Endpoint: r.endpoint, StatusCode: resp.StatusCode, Resource: r.resource}
	if r.method != "" && r.method != http.MethodGet {
		apiErr.Method = r.method
	}
	apiErr.Message = c.errorMessage(body)
	switch resp.StatusCode {
	case http.StatusForbidden:
		apiErr.Scope = scopeFromMessage(apiErr.Message)
	case http.StatusTooManyRequests:
		rl, scope, reset, ok := parseRateLimited(body, resp.Header, now)
		apiErr.RateLimitScope = scope
		if reset.clamped {
			c.logClamped(reset, r.endpoint)
		}
		if ok {
			c.budget.exhausted(scope, now, reset.d)
		}
		level.Warn(c.logger).Log("msg", "Buildkite API rate limit exceeded", "endpoint", r.endpoint,
			"scope", scope, "reset", reset.d, "limit", numString(rl.Limit), "current", numString(rl.Current))
	}
	return nil, apiErr
}

// logClamped says that a reset from an answer was out of range or not a number, once per source
// and value.
func (c *Client) logClamped(v resetValue, endpoint string) {
	raw := shorten(c.scrub(v.raw), 40)
	c.clampedMu.Lock()
	if c.clampedLogged == nil {
		c.clampedLogged = map[string]string{}
	}
	same := c.clampedLogged[v.source] == raw
	c.clampedLogged[v.source] = raw
	c.clampedMu.Unlock()
	if same {
		return
	}
	if v.ignored {
		level.Warn(c.logger).Log("msg", "Ignoring a Buildkite rate-limit reset that is not a number of seconds",
			"source", v.source, "value", raw, "endpoint", endpoint)
		return
	}
	level.Warn(c.logger).Log("msg", "Clamped a Buildkite rate-limit reset outside the sane range (Buildkite's window is 60s)",
		"source", v.source, "value", raw, "used", v.d, "max", maxResetWait, "endpoint", endpoint)
}

// numString is a 429 body's number for the log; json.Number only holds number literals, but a
// hostile one may be long.
func numString(n *json.Number) string {
	if n == nil {
		return ""
	}
	return shorten(n.String(), 32)
}

// readBody reads at most maxBody bytes, refusing larger answers early when Content-Length
// announces them. The buffer grows with the bytes that arrive, never sized by the length an
// answer announces.
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

// errorMessage extracts {"message": "..."} from an error body, else a short snippet of it. The
// token is scrubbed before the text is shortened: shortening first could cut an echoed token in
// two, and scrubbing would then miss the half that is left.
func (c *Client) errorMessage(body []byte) string {
	var m struct {
		Message string `json:"message"`
	}
	if err := json.Unmarshal(body, &m); err == nil && m.Message != "" {
		return shorten(c.scrub(m.Message), maxMessageLen)
	}
	return shorten(c.scrub(strings.Join(strings.Fields(string(bytes.ToValidUTF8(body, nil))), " ")), maxMessageLen)
}

// shorten cuts s to at most n bytes (and an ellipsis) on a rune boundary.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !isRuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// scrub removes the token from s, in case an answer or a transport echoes the request. It
// matches regardless of ASCII case: a URL's host, for one, may reach a message lower-cased.
// Scrub whole texts before shortening them: a cut through the token leaves a part scrub cannot
// recognise.
func (c *Client) scrub(s string) string {
	t := c.token.Reveal()
	if t == "" || len(s) < len(t) {
		return s
	}
	lower, lt := asciiLower(s), asciiLower(t) // same lengths, so indexes carry over
	i := strings.Index(lower, lt)
	if i < 0 {
		return s
	}
	var b strings.Builder
	for ; i >= 0; i = strings.Index(lower, lt) {
		b.WriteString(s[:i])
		b.WriteString(c.token.String())
		s, lower = s[i+len(t):], lower[i+len(t):]
	}
	b.WriteString(s)
	return b.String()
}

// asciiLower lower-cases A–Z only, keeping every byte's position.
func asciiLower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// transportError describes a request that got no answer without the URL's query or headers;
// *url.Error already drops headers, and the message is scrubbed as a second line of defence.
//
// ctx is the request's own context: when its deadline (Config.RequestTimeout) has passed, the
// error says so, since that is what ended the request, whatever the transport reported.
func (c *Client) transportError(ctx context.Context, r request, err error, kind string) *TransportError {
	inner := err
	var uErr *url.Error
	if errors.As(err, &uErr) {
		inner = uErr.Err
	}
	var nErr net.Error
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		kind = fmt.Sprintf("no complete answer within the request timeout of %v", c.timeout)
	case errors.As(err, &nErr) && nErr.Timeout():
		kind = "request timed out"
	}
	return &TransportError{
		Endpoint: r.endpoint,
		Host:     c.base.Host,
		Err:      err,
		msg:      c.scrub(fmt.Sprintf("GET %s on %s: %s: %v", r.endpoint, c.base.Host, kind, inner)),
	}
}

// decodeError describes an answer that is not the expected JSON. The decoder's text can quote
// the offending value, which a hostile or echoing server may fill with the request's
// Authorization header: the text is scrubbed, then shortened, and the original error is not
// kept, so no Unwrap chain leads back to it.
func (c *Client) decodeError(endpoint string, err error) *DecodeError {
	msg := decoderNames.Replace(err.Error())
	return &DecodeError{Endpoint: endpoint, Err: errors.New(shorten(c.scrub(msg), maxDecodeErrorLen))}
}

// decoderNames turns the names of the bounded decoding types in encoding/json's texts back into
// the model's.
var decoderNames = strings.NewReplacer("wireBuild.buildFields.", "Build.", "buildkite.wireBuild", "buildkite.Build")

// decode unmarshals a successful answer into v, naming the endpoint on failure.
func (c *Client) decode(endpoint string, body []byte, v any) error {
	if err := json.Unmarshal(body, v); err != nil {
		return c.decodeError(endpoint, err)
	}
	return nil
}

// serverClock is Buildkite's clock as the Date header of the latest answer tells it.
type serverClock struct {
	mu       sync.Mutex
	date     time.Time // the header's time
	received time.Time // local time (with its monotonic reading) when it arrived
}

func (s *serverClock) observe(h http.Header) {
	v := h.Get("Date")
	if v == "" {
		return
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.date, s.received = t, time.Now()
	s.mu.Unlock()
}

// ServerTime estimates Buildkite's clock now: the Date header of the latest answer plus the time
// elapsed (on the local monotonic clock) since that answer arrived. ok is false until an answer
// with a valid Date header arrived.
//
// It is informational: Date has a resolution of one second, and a proxy in front of the API may
// write its own. Use it to judge whether a timestamp lies in the future on Buildkite's own clock,
// with a tolerance of a few seconds, not to correct timestamps.
func (c *Client) ServerTime() (time.Time, bool) {
	c.clock.mu.Lock()
	defer c.clock.mu.Unlock()
	if c.clock.received.IsZero() {
		return time.Time{}, false
	}
	return c.clock.date.Add(time.Since(c.clock.received)), true
}

// ClockSkew is Buildkite's clock minus the local clock as of the latest answer with a Date
// header, within a second (the header's resolution); informational, as ServerTime.
func (c *Client) ClockSkew() (time.Duration, bool) {
	c.clock.mu.Lock()
	defer c.clock.mu.Unlock()
	if c.clock.received.IsZero() {
		return 0, false
	}
	return c.clock.date.Sub(c.clock.received), true
}
