package buildkite

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
)

const (
	// tokenRecheckInterval: a token can expire or be revoked at any time; re-reading it every
	// ten minutes notices that within one alerting period for six requests an hour.
	tokenRecheckInterval = 10 * time.Minute
	// tokenRetryMin and tokenRetryMax bound the backoff while the token cannot be checked or
	// lacks a scope, so a fixed token is picked up quickly without hammering the API.
	tokenRetryMin = 15 * time.Second
	tokenRetryMax = 5 * time.Minute
	// tokenExpiryWarning: log a warning when the token expires within this period.
	tokenExpiryWarning = 7 * 24 * time.Hour
)

// TokenChecker reads GET /v2/access-token at start and periodically, and reports whether the
// token carries the scopes the exporter needs. It never stops the process: a missing scope is
// a metric, a log line and Ready() == false until someone fixes the token.
type TokenChecker struct {
	c        *Client
	required []string
	logger   log.Logger

	missingGauge *prometheus.GaugeVec
	expiryGauge  *prometheus.GaugeVec // no labels; Reset when the token never expires

	interval, retryMin, retryMax time.Duration

	mu      sync.Mutex
	ready   bool
	missing []string
}

// NewTokenChecker returns a checker for the required scopes. Its gauges
// buildkite_exporter_token_missing_scopes{scope} and
// buildkite_exporter_token_expiry_timestamp_seconds are registered with reg when reg is not nil.
func NewTokenChecker(c *Client, required []string, logger log.Logger, reg prometheus.Registerer) *TokenChecker {
	if logger == nil {
		logger = log.NewNopLogger()
	}
	t := &TokenChecker{
		c:        c,
		required: slices.Clone(required),
		logger:   logger,
		missingGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "buildkite_exporter_token_missing_scopes",
			Help: "1 when the Buildkite API token lacks a scope the exporter needs, 0 when it has it; from GET /v2/access-token, re-read every 10 minutes.",
		}, []string{"scope"}),
		expiryGauge: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "buildkite_exporter_token_expiry_timestamp_seconds",
			Help: "When the Buildkite API token expires, as a Unix timestamp; absent for tokens without expiry.",
		}, nil),
		interval: tokenRecheckInterval,
		retryMin: tokenRetryMin,
		retryMax: tokenRetryMax,
	}
	if reg != nil {
		t.missingGauge = registerOrReuse(reg, t.missingGauge, logger)
		t.expiryGauge = registerOrReuse(reg, t.expiryGauge, logger)
	}
	return t
}

// registerOrReuse registers g, or returns the equal collector already registered (a second
// checker on one registry); on any other error it logs and keeps g unregistered.
func registerOrReuse(reg prometheus.Registerer, g *prometheus.GaugeVec, logger log.Logger) *prometheus.GaugeVec {
	if err := reg.Register(g); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.GaugeVec); ok {
				return existing
			}
		}
		level.Error(logger).Log("msg", "Cannot register token metric", "err", err)
	}
	return g
}

// Ready reports whether the latest completed check found all required scopes.
func (t *TokenChecker) Ready() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.ready
}

// Missing returns the required scopes the token lacked at the latest check (all of them while
// the token is rejected with 401).
func (t *TokenChecker) Missing() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return slices.Clone(t.missing)
}

// Run checks the token until ctx ends: every interval when all is well, with a growing backoff
// while the check fails or a scope is missing.
func (t *TokenChecker) Run(ctx context.Context) {
	retry := t.retryMin
	for {
		wait := t.interval
		if !t.check(ctx) {
			wait = retry
			retry = min(retry*2, t.retryMax)
		} else {
			retry = t.retryMin
		}
		if sleep(ctx, wait) != nil {
			return
		}
	}
}

// TokenStatus is what one read of GET /v2/access-token says about the token.
type TokenStatus struct {
	UUID      string
	Scopes    []string  // the token's scopes, as Buildkite lists them
	Missing   []string  // the required scopes the token lacks, in the order they were required
	ExpiresAt Timestamp // zero when the token never expires
}

// CheckOnce reads the token once and compares its scopes with the required ones. It neither logs
// nor changes Ready, Missing or the gauges, so a one-shot caller (the check command) shares the
// scope rules without the periodic checker's side effects. A token Buildkite rejects outright
// is an error wrapping ErrUnauthorized, not a status.
func (t *TokenChecker) CheckOnce(ctx context.Context) (TokenStatus, error) {
	tok, err := t.c.AccessToken(ctx)
	if err != nil {
		return TokenStatus{}, err
	}
	st := TokenStatus{UUID: tok.UUID, Scopes: tok.Scopes, ExpiresAt: tok.ExpiresAt}
	for _, s := range t.required {
		if !tok.HasScope(s) {
			st.Missing = append(st.Missing, s)
		}
	}
	return st, nil
}

// check runs CheckOnce, records its verdict in the state and gauges, logs it, and reports whether
// the token is fine.
func (t *TokenChecker) check(ctx context.Context) bool {
	st, err := t.CheckOnce(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return false
		}
		if errors.Is(err, ErrUnauthorized) {
			// The token itself is rejected: it has none of the scopes.
			t.set(false, t.required)
		}
		// Network trouble or a 5xx says nothing about the token: the previous verdict stands.
		level.Error(t.logger).Log("msg", "Cannot check the Buildkite API token", "err", err)
		return false
	}
	t.set(len(st.Missing) == 0, st.Missing)
	if st.ExpiresAt.IsZero() {
		t.expiryGauge.Reset()
	} else {
		t.expiryGauge.WithLabelValues().Set(float64(st.ExpiresAt.Unix()))
	}
	if len(st.Missing) > 0 {
		level.Error(t.logger).Log("msg", "Buildkite API token lacks required scopes; edit the token at https://buildkite.com/user/api-access-tokens",
			"missing_scopes", strings.Join(st.Missing, ","), "scopes", strings.Join(st.Scopes, ","), "token_uuid", st.UUID)
		return false
	}
	level.Info(t.logger).Log("msg", "Buildkite API token checked", "scopes", strings.Join(st.Scopes, ","),
		"token_uuid", st.UUID, "expires_at", expiry(st.ExpiresAt))
	if !st.ExpiresAt.IsZero() && time.Until(st.ExpiresAt.Time) < tokenExpiryWarning {
		level.Warn(t.logger).Log("msg", "Buildkite API token expires soon; create a new one before it does",
			"expires_at", expiry(st.ExpiresAt), "token_uuid", st.UUID)
	}
	return true
}

func expiry(ts Timestamp) string {
	if ts.IsZero() {
		return "never"
	}
	return ts.UTC().Format(time.RFC3339)
}

func (t *TokenChecker) set(ready bool, missing []string) {
	t.mu.Lock()
	t.ready = ready
	t.missing = slices.Clone(missing)
	t.mu.Unlock()
	for _, s := range t.required {
		v := 0.0
		if slices.Contains(missing, s) {
			v = 1
		}
		t.missingGauge.WithLabelValues(s).Set(v)
	}
}
