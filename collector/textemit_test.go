package collector

import (
	"bytes"
	"compress/gzip"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

// TestEncodedOnlyHostileLabels: the direct text encoder of an EncodedOnly snapshot writes, line
// for line, what expfmt writes for the const metrics of the same input, with label values that
// need escaping or are not valid UTF-8, and its output parses to the same series.
func TestEncodedOnlyHostileLabels(t *testing.T) {
	in := benchInput(3, true)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, name := range []string{`quo"te`, `back\slash\`, "new\nline", "bad\xffutf8", "mixed \"\\\n\xfe end", "ünïcødé ✓"} {
		comp := component(name, name+"-deploy")
		in.catalog = append(in.catalog, comp)
		for j, env := range []string{"production", "env \"odd\"\n\\x\xff"} {
			for k, st := range []string{"failed", "passed", "canceled", "passed"} {
				at := base.Add(time.Duration(i*100+j*10+k) * time.Minute)
				in.agg.apply(store.Record{
					Key: name + env + st, Pipeline: testOrg + "/" + name + "-deploy", Component: name, Environment: env,
					State: st, Commit: "c\"o\\m\nmit\xc3", Version: "v\"1\\2\n3\xfe", LeadTimeSeconds: 1e-7 * float64(k+1),
					StartedAt: at.Add(-time.Duration(k*k) * time.Second), FinishedAt: at, ApprovalWaitSeconds: 1e9 + 0.5,
				})
			}
			in.live[envKey(name, env)] = liveEnv{Running: 2, RunningSince: base.Add(123456789), Awaiting: 1, AwaitingSince: base}
		}
	}
	in.orgs["org \"x\"\n\\\xff"] = orgHealth{Polled: true, LastOK: false, LastSuccess: base.Add(1), LastDuration: 1234567, Errors: 3}

	consts := buildSnapshot(in)
	in.encodedOnly = true
	direct := buildSnapshot(in)
	if direct.metrics != nil || direct.enc.encodeErr != nil || len(direct.enc.gz) == 0 {
		t.Fatalf("direct snapshot: %d metrics, %d gzip bytes, err %v", len(direct.metrics), len(direct.enc.gz), direct.enc.encodeErr)
	}
	if !slices.Equal(consts.unknownEnvs, direct.unknownEnvs) {
		t.Errorf("unknown environments differ: %q vs %q", consts.unknownEnvs, direct.unknownEnvs)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(snapshotCollector{consts})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var want bytes.Buffer
	enc := expfmt.NewEncoder(&want, textFormat)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	zr, err := gzip.NewReader(bytes.NewReader(direct.enc.gz))
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}

	// Same families in the same order, each once.
	helps := func(b []byte) (out []string) {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "# ") {
				out = append(out, l)
			}
		}
		return out
	}
	if diff := cmp.Diff(helps(want.Bytes()), helps(got)); diff != "" {
		t.Errorf("HELP and TYPE lines differ (-expfmt +direct):\n%s", diff)
	}
	// Same lines, byte for byte; series order inside a family may differ.
	lines := func(b []byte) []string {
		l := strings.Split(string(b), "\n")
		slices.Sort(l)
		return l
	}
	if diff := cmp.Diff(lines(want.Bytes()), lines(got)); diff != "" {
		t.Errorf("exposition lines differ (-expfmt +direct):\n%s", diff)
	}
	for _, s := range []string{`component="quo\"te"`, `component="back\\slash\\"`, `component="new\nline"`, "component=\"bad\uFFFDutf8\"", `version="v\"1\\2\n3` + "\uFFFD\""} {
		if !bytes.Contains(got, []byte(s)) {
			t.Errorf("direct exposition lacks %s", s)
		}
	}

	parser := expfmt.NewTextParser(model.UTF8Validation)
	parsed, err := parser.TextToMetricFamilies(bytes.NewReader(got))
	if err != nil {
		t.Fatalf("unparsable direct exposition: %v", err)
	}
	gotSeries := gather(t, gathererFunc(func() ([]*dto.MetricFamily, error) {
		var out []*dto.MetricFamily
		for _, mf := range parsed {
			out = append(out, mf)
		}
		return out, nil
	}))
	if diff := cmp.Diff(gather(t, reg), gotSeries); diff != "" {
		t.Errorf("parsed series differ (-const metrics +direct):\n%s", diff)
	}
}
