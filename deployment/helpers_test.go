package deployment

import (
	"fmt"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

func ts(t time.Time) buildkite.Timestamp { return buildkite.Timestamp{Time: t.UTC()} }

func sha(n int) string { return fmt.Sprintf("%040x", n) }
