package collector

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
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

// formatGoldens are the fixture organization's /metrics deployment families in each format
// Prometheus negotiates, served by the exposition handler from the collector's snapshot: the
// text one is the fixture.prom above (through the chunked encoder rather than a registry).
var formatGoldens = []struct {
	file, accept, contentType string
}{
	{"testdata/fixture.om.txt", "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5", "application/openmetrics-text; version=1.0.0; charset=utf-8; escaping=underscores"},
	{"testdata/fixture.proto.txt", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,text/plain;version=0.0.4;q=0.3", "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited; escaping=underscores"},
	{"testdata/fixture.served.prom", "", "text/plain; version=0.0.4; charset=utf-8; escaping=underscores"},
}

// TestFixtureGoldenFormats serves the fixture organization in every format and compares each
// body (protobuf decoded and printed as text) with its golden; each must hold the same series
// as fixture.prom.
func TestFixtureGoldenFormats(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startFixture(t)
		handler := exposition.NewHandler(h.c.Snapshot, h.reg, exposition.HandlerOpts{})
		want, err := os.ReadFile(goldenFile)
		if err != nil {
			t.Fatal(err)
		}
		wantSeries := gatherText(t, bytes.NewReader(want))
		for _, g := range formatGoldens {
			req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
			if g.accept != "" {
				req.Header.Set("Accept", g.accept)
			}
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, req)
			if ct := rec.Header().Get("Content-Type"); ct != g.contentType {
				t.Errorf("%s: Content-Type %q, want %q", g.file, ct, g.contentType)
			}
			format := expfmt.Format(rec.Header().Get("Content-Type"))
			mfs := decodeAll(t, rec.Body.Bytes(), format)
			body := rec.Body.Bytes()
			if format.FormatType() == expfmt.TypeProtoDelim {
				body = []byte(textOf(t, mfs)) // the golden of protobuf is its decoded families
			}
			if *update {
				if err := os.WriteFile(g.file, body, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			golden, err := os.ReadFile(g.file)
			if err != nil {
				t.Fatalf("%v (run go test ./collector -run TestFixtureGoldenFormats -update)", err)
			}
			if !bytes.Equal(golden, body) {
				t.Errorf("%s differs from the served body (rerun with -update if intended):\n%s", g.file, cmp.Diff(string(golden), string(body)))
			}
			if diff := cmp.Diff(wantSeries, gatherFamilies(mfs)); diff != "" {
				t.Errorf("%s: series differ from %s (-text golden +served):\n%s", g.file, goldenFile, diff)
			}
		}
	})
}

// decodeAll decodes a whole exposition in format.
func decodeAll(t *testing.T, b []byte, format expfmt.Format) []*dto.MetricFamily {
	t.Helper()
	dec := expfmt.NewDecoder(bytes.NewReader(b), format)
	var out []*dto.MetricFamily
	for {
		mf := &dto.MetricFamily{}
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatalf("decoding %s: %v", format, err)
		}
		out = append(out, mf)
	}
}

// gatherText parses a text exposition into the harness's series map.
func gatherText(t *testing.T, r io.Reader) map[string]float64 {
	t.Helper()
	return gatherFamilies(decodeAll(t, mustReadAll(t, r), expfmt.NewFormat(expfmt.TypeTextPlain)))
}

func gatherFamilies(mfs []*dto.MetricFamily) map[string]float64 {
	return gatherOf(gathererFunc(func() ([]*dto.MetricFamily, error) { return mfs, nil }))
}

type gathererFunc func() ([]*dto.MetricFamily, error)

func (f gathererFunc) Gather() ([]*dto.MetricFamily, error) { return f() }

func mustReadAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// textOf writes families in the text format.
func textOf(t *testing.T, mfs []*dto.MetricFamily) string {
	t.Helper()
	var buf bytes.Buffer
	for _, mf := range mfs {
		if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}
