package buildkite

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

func tokenBody(scopes string, expiresAt time.Time) string {
	return fmt.Sprintf(`{"uuid":"tok-1","scopes":[%s],"created_at":"2025-07-16 06:07:42 UTC","expires_at":%q}`,
		scopes, expiresAt.UTC().Format(time.RFC3339))
}

// CheckOnce reports scopes, missing scopes and expiry, and leaves the checker's verdict, gauges
// and log alone: the check command calls it on a checker nobody runs.
func TestTokenCheckerCheckOnce(t *testing.T) {
	expires := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	s := &script{answers: []answer{{body: tokenBody(`"read_builds","write_builds"`, expires)}}}
	reg := newRegistry()
	logs := &testenv.LogBuffer{}
	tc := NewTokenChecker(newTestClient(t, s, Config{}), []string{ScopeReadPipelines, ScopeReadBuilds, "read_artifacts"}, newLogfmt(logs), reg)

	st, err := tc.CheckOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.UUID != "tok-1" || !st.ExpiresAt.Equal(expires) {
		t.Errorf("uuid %q expires %v, want tok-1 and %v", st.UUID, st.ExpiresAt, expires)
	}
	if diff := cmp.Diff([]string{"read_builds", "write_builds"}, st.Scopes); diff != "" {
		t.Errorf("scopes (-want +got):\n%s", diff)
	}
	// In the order required, not the token's.
	if diff := cmp.Diff([]string{ScopeReadPipelines, "read_artifacts"}, st.Missing); diff != "" {
		t.Errorf("missing (-want +got):\n%s", diff)
	}
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("CheckOnce set %d series (%v), want none", n, err)
	}
	if tc.Ready() || tc.Missing() != nil || logs.String() != "" {
		t.Errorf("CheckOnce changed the checker: ready=%v missing=%v log=%q", tc.Ready(), tc.Missing(), logs.String())
	}
}

func TestTokenCheckerCheckOnceAllScopes(t *testing.T) {
	s := &script{answers: []answer{{body: `{"uuid":"tok-1","scopes":["read_pipelines","read_builds"],"expires_at":null}`}}}
	tc := NewTokenChecker(newTestClient(t, s, Config{}), []string{ScopeReadBuilds, ScopeReadPipelines}, nil, nil)
	st, err := tc.CheckOnce(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Missing != nil || !st.ExpiresAt.IsZero() {
		t.Errorf("missing %v expires %v, want none and never", st.Missing, st.ExpiresAt)
	}
}

func TestTokenCheckerCheckOnceRejected(t *testing.T) {
	s := &script{answers: []answer{{status: 401, body: `{"message":"Authentication required"}`}}}
	tc := NewTokenChecker(newTestClient(t, s, Config{MaxRetries: -1}), []string{ScopeReadBuilds}, nil, nil)
	st, err := tc.CheckOnce(context.Background())
	if !errors.Is(err, ErrUnauthorized) {
		t.Errorf("err = %v, want ErrUnauthorized", err)
	}
	if st.UUID != "" || st.Scopes != nil || st.Missing != nil {
		t.Errorf("status %+v with an error, want the zero status", st)
	}
}

// The periodic check records what CheckOnce found: the expiry gauge and, for a token that
// expires within a week, a warning.
func TestTokenCheckerRecordsExpiry(t *testing.T) {
	expires := time.Now().Add(time.Hour).Truncate(time.Second)
	s := &script{answers: []answer{{body: tokenBody(`"read_builds"`, expires)}}}
	reg := newRegistry()
	logs := &testenv.LogBuffer{}
	tc := NewTokenChecker(newTestClient(t, s, Config{}), []string{ScopeReadBuilds}, newLogfmt(logs), reg)
	if !tc.check(context.Background()) || !tc.Ready() {
		t.Fatalf("check of a token with every scope failed:\n%s", logs.String())
	}
	want := fmt.Sprintf(`
# HELP buildkite_exporter_token_expiry_timestamp_seconds When the Buildkite API token expires, as a Unix timestamp; absent for tokens without expiry.
# TYPE buildkite_exporter_token_expiry_timestamp_seconds gauge
buildkite_exporter_token_expiry_timestamp_seconds %d
`, expires.Unix())
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "buildkite_exporter_token_expiry_timestamp_seconds"); err != nil {
		t.Error(err)
	}
	if !strings.Contains(logs.String(), "expires soon") {
		t.Errorf("no warning for a token expiring in an hour:\n%s", logs.String())
	}
}
