package collector

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/exposition"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/fixture"
)

var update = flag.Bool("update", false, "rewrite testdata/fixture.prom")

const goldenFile = "testdata/fixture.prom"

// startFixture runs the collector over the fixture organization with the default configuration:
// the first cycle is the backfill, which lists builds with their jobs, so it times the fixture's
// approval without approval_timing: all.
func startFixture(t *testing.T) *harness {
	f := buildkitetest.New()
	comps := fixture.Populate(f, time.Now())
	f.SetToken(testToken, "read_builds")
	return start(t, f, comps, withConfig(config.Default()))
}

// TestFixtureGolden renders the fixture organization and compares it with testdata/fixture.prom,
// which the dashboards and alert rules are checked against. Run with -update to rewrite it.
func TestFixtureGolden(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startFixture(t)
		mfs, err := h.gatherer().Gather()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		enc := expfmt.NewEncoder(&buf, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				t.Fatal(err)
			}
		}
		if *update {
			if err := os.MkdirAll(filepath.Dir(goldenFile), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(goldenFile, buf.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(goldenFile)
		if err != nil {
			t.Fatalf("%v (run go test ./collector -run TestFixtureGolden -update to create it)", err)
		}
		if err := testutil.GatherAndCompare(h.gatherer(), bytes.NewReader(want)); err != nil {
			t.Errorf("exposition differs from %s (rerun with -update if the change is intended):\n%v", goldenFile, err)
		}
		problems, err := testutil.CollectAndLint(exposition.NewCollector(h.c.Snapshot()))
		if err != nil {
			t.Fatal(err)
		}
		more, err := testutil.CollectAndLint(h.c.HealthCollector())
		if err != nil {
			t.Fatal(err)
		}
		problems = append(problems, more...)
		for _, p := range problems {
			t.Errorf("lint: %s: %s", p.Metric, p.Text)
		}
	})
}
