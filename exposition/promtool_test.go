package exposition

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

// promtool finds promtool: $PROMTOOL (e.g. the path `go tool -modfile=tools/go.mod -n promtool`
// prints), else promtool on PATH; missing, the test is skipped, or fails in CI.
func promtool(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("PROMTOOL"); p != "" {
		return p
	}
	return testenv.Binary(t, "promtool", "prometheus")
}

// TestPromtoolCheckMetrics lints the text and OpenMetrics goldens with promtool check metrics.
// promtool reads text 0.0.4 only: in OpenMetrics a counter's HELP and TYPE name the family
// without _total, so it reports such counters as without help, and nothing else may be reported.
func TestPromtoolCheckMetrics(t *testing.T) {
	bin := promtool(t)
	for _, c := range []struct {
		file    string
		allowed []string
	}{
		{"testdata/fixture.prom", nil},
		{"testdata/fixture.om.txt", []string{"buildkite_deployments_total no help text"}},
	} {
		in, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(bin, "check", "metrics")
		cmd.Stdin = bytes.NewReader(in)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		err = cmd.Run()
		var problems []string
		for line := range strings.Lines(out.String()) {
			if line = strings.TrimSpace(line); line != "" && !contains(c.allowed, line) {
				problems = append(problems, line)
			}
		}
		if len(problems) > 0 || (err != nil && len(c.allowed) == 0) {
			t.Errorf("promtool check metrics < %s: %v\n%s", c.file, err, out.String())
		}
		t.Logf("promtool check metrics < %s: %v %q", c.file, err, out.String())
	}
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
