package exposition

import (
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
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

// exemplarSuffix is an OpenMetrics exemplar at the end of a sample line.
var exemplarSuffix = regexp.MustCompile(` # \{[^}]*\} \S+( \S+)?$`)

// withoutExemplars cuts the exemplars off the sample lines of an OpenMetrics exposition.
func withoutExemplars(b []byte) ([]byte, int) {
	var out bytes.Buffer
	n := 0
	for line := range strings.Lines(string(b)) {
		line = strings.TrimSuffix(line, "\n")
		if loc := exemplarSuffix.FindStringIndex(line); loc != nil && !strings.HasPrefix(line, "#") {
			line = line[:loc[0]]
			n++
		}
		out.WriteString(line + "\n")
	}
	return out.Bytes(), n
}

// TestPromtoolCheckMetrics lints the text and OpenMetrics goldens with promtool check metrics.
// promtool (Debian's 2.42 and 3.x alike) parses its input as text 0.0.4 only: an OpenMetrics
// exemplar is a parse error to it ("expected integer as timestamp, got \"#\""), so the
// OpenMetrics goldens are linted with their exemplars cut off (TestOpenMetricsGoldensParse
// checks the exemplars with Prometheus's own OpenMetrics parser). In OpenMetrics a counter's
// HELP and TYPE name the family without _total, so promtool reports such counters as without
// help, and nothing else may be reported.
func TestPromtoolCheckMetrics(t *testing.T) {
	bin := promtool(t)
	omCounters := []string{"buildkite_deployments_total no help text", "buildkite_exporter_exemplars_dropped_total no help text"}
	for _, c := range []struct {
		file    string
		allowed []string
	}{
		{"testdata/fixture.prom", nil},
		{"testdata/fixture.om.txt", omCounters},
		// Read as text 0.0.4, each kind of _created line is a family of its own, as a
		// Prometheus before 2.50 stores it.
		{"testdata/fixture.created.om.txt", append([]string{
			"buildkite_deployment_approval_wait_seconds_created no help text",
			"buildkite_deployment_duration_seconds_created no help text",
			"buildkite_deployment_lead_time_seconds_created no help text",
			"buildkite_deployments_created no help text",
		}, omCounters...)},
	} {
		in, err := os.ReadFile(c.file)
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(c.file, ".om.txt") {
			var n int
			if in, n = withoutExemplars(in); n == 0 {
				t.Errorf("%s has no exemplar to cut", c.file)
			}
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

// TestOpenMetricsGoldensParse reads the OpenMetrics goldens with expfmt's OpenMetrics 1.0
// parser, which checks every line against the specification's ABNF and exemplars against its
// 128-rune limit: every exemplar of the fixture is read back on the bucket of its value with
// its build, commit, value and timestamp; the golden with _created lines has every created
// timestamp of the fixture, the other none.
func TestOpenMetricsGoldensParse(t *testing.T) {
	want := map[string]string{}        // series → its exemplar
	wantCreated := map[string]string{} // series → created time
	s := fixture()
	for i := range s.Components {
		c := &s.Components[i]
		for j := range c.Environments {
			e := &c.Environments[j]
			for _, d := range e.Deployments {
				for _, st := range []string{"canceled", "failed", "passed"} {
					if !d.Created.IsZero() {
						wantCreated["buildkite_deployments_total"+seriesKey("component", c.Label, "environment", e.Name, "pipeline", d.Pipeline, "state", st)] = d.Created.UTC().String()
					}
				}
			}
			hists := map[string]labelsHist{
				"buildkite_deployment_lead_time_seconds":     {e.LeadTime, ""},
				"buildkite_deployment_approval_wait_seconds": {e.ApprovalWait, ""},
				"buildkite_deployment_recovery_seconds":      {e.Recovery, ""},
			}
			for st, h := range e.Duration {
				hists["buildkite_deployment_duration_seconds/"+snapshot.States[st]] = labelsHist{h, snapshot.States[st]}
			}
			for name, lh := range hists {
				h := lh.h
				if h == nil {
					continue
				}
				name, _, _ = strings.Cut(name, "/")
				lbls := []string{"component", c.Label, "environment", e.Name}
				if lh.state != "" {
					lbls = append(lbls, "state", lh.state)
				}
				if h.Created != 0 {
					wantCreated[name+seriesKey(lbls...)] = time.Unix(0, h.Created).UTC().String()
				}
				for k, x := range h.Exemplars {
					if x == nil {
						continue
					}
					le := math.Inf(1)
					if k < len(h.Bounds) {
						le = h.Bounds[k]
					}
					ex := fmt.Sprintf("build=%s commit=%s %v %v", x.Build, x.Commit, x.Value, x.At())
					want[fmt.Sprintf("%s%s le=%v", name, seriesKey(lbls...), le)] = ex
				}
			}
		}
	}
	if len(want) == 0 || len(wantCreated) == 0 {
		t.Fatal("the fixture has no exemplar or created timestamp")
	}
	for _, file := range []string{"testdata/fixture.om.txt", "testdata/fixture.created.om.txt"} {
		t.Run(file, func(t *testing.T) {
			b, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			got, gotCreated := map[string]string{}, map[string]string{}
			for _, mf := range decode(t, b, expfmt.FmtOpenMetrics_1_0_0) {
				for _, m := range mf.GetMetric() {
					var lbls []string
					for _, lp := range m.GetLabel() {
						lbls = append(lbls, lp.GetName(), lp.GetValue())
					}
					key := mf.GetName() + seriesKey(lbls...)
					var ct *timestamppb.Timestamp
					if h := m.GetHistogram(); h != nil {
						ct = h.GetCreatedTimestamp()
						for _, bk := range h.GetBucket() {
							if x := bk.GetExemplar(); x != nil {
								l := map[string]string{}
								for _, lp := range x.GetLabel() {
									l[lp.GetName()] = lp.GetValue()
								}
								if len(l) != len(x.GetLabel()) || len(l) > 2 || l["build"] == "" {
									t.Errorf("%s: exemplar labels %v", key, x.GetLabel())
								}
								got[fmt.Sprintf("%s le=%v", key, bk.GetUpperBound())] = fmt.Sprintf("build=%s commit=%s %v %v",
									l["build"], l["commit"], x.GetValue(), x.GetTimestamp().AsTime().UTC())
							}
						}
					}
					if c := m.GetCounter(); c != nil {
						ct = c.GetCreatedTimestamp()
					}
					if ct != nil {
						gotCreated[key] = ct.AsTime().UTC().String()
					}
				}
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("exemplars (-fixture +parsed):\n%s", diff)
			}
			wantCT := wantCreated
			if !strings.Contains(file, "created") {
				wantCT = map[string]string{}
			}
			if diff := cmp.Diff(wantCT, gotCreated); diff != "" {
				t.Errorf("created timestamps (-fixture +parsed):\n%s", diff)
			}
		})
	}
}

// seriesKey is label pairs as "{a=b,…}", sorted by name.
func seriesKey(pairs ...string) string {
	var kv []string
	for i := 0; i+1 < len(pairs); i += 2 {
		kv = append(kv, pairs[i]+"="+pairs[i+1])
	}
	slices.Sort(kv)
	return "{" + strings.Join(kv, ",") + "}"
}

// labelsHist is a histogram of the fixture and its state label ("" for none).
type labelsHist struct {
	h     *snapshot.Histogram
	state string
}

func contains(list []string, s string) bool {
	for _, l := range list {
		if l == s {
			return true
		}
	}
	return false
}
