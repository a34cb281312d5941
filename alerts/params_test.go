package alerts

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
)

// The rules command with no --config.file must print the committed rule file, which is the render
// of DefaultParams: the configuration's defaults and DefaultParams must agree.
func TestParamsFromDefaultConfig(t *testing.T) {
	if diff := cmp.Diff(DefaultParams(), ParamsFromConfig(config.Default(), DefaultRunbookURL)); diff != "" {
		t.Errorf("ParamsFromConfig(config.Default()) differs from DefaultParams (-want +got):\n%s", diff)
	}
}

func TestParamsFromConfig(t *testing.T) {
	cfg, err := config.Parse([]byte(`
slos:
  duration_threshold: 10m
  window: 30d
alerts:
  failing_for: 20m
  slow_threshold: 45m
  stuck_after: 3h
  awaiting_approval_after: 12h
  min_deployments: 5
  polling_stale_after: 20m
  rate_limit_low_ratio: 0.25
  webhooks_silent_after: 3h
`))
	if err != nil {
		t.Fatal(err)
	}
	const runbook = "https://wiki.example.org/runbooks/buildkite.md"
	got := ParamsFromConfig(cfg, runbook)

	want := DefaultParams()
	want.RunbookURL = runbook
	want.DurationThreshold = 10 * time.Minute
	want.SLOWindow = 30 * 24 * time.Hour
	want.FailingFor = 20 * time.Minute
	want.SlowThreshold = 45 * time.Minute
	want.StuckAfter = 3 * time.Hour
	want.AwaitingApprovalAfter = 12 * time.Hour
	want.MinDeployments = 5
	want.PollingStaleAfter = 20 * time.Minute
	want.RateLimitLowRatio = 0.25
	want.WebhooksSilentAfter = 3 * time.Hour
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("params (-want +got):\n%s", diff)
	}

	// A valid configuration gives parameters that render.
	if _, err := Render(got); err != nil {
		t.Error(err)
	}
}
