package collector

import (
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/synctest"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/fixture"
	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"time"
)

type gathererFunc func() ([]*dto.MetricFamily, error)

func (f gathererFunc) Gather() ([]*dto.MetricFamily, error) { return f() }

// TestHandlerServesTheSameSeries: the cached handler's exposition, plain and gzipped, parses to
// exactly what the registry renders, plus the exporter's own families.
func TestHandlerServesTheSameSeries(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := startFixture(t)
		want := h.metrics()
		rest := prometheus.NewRegistry()
		g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "buildkite_exporter_test_gauge", Help: "x"})
		g.Set(7)
		rest.MustRegister(g)
		want[series("buildkite_exporter_test_gauge")] = 7
		for _, gz := range []bool{false, true} {
			if diff := cmp.Diff(want, scrape(t, h.c.Handler(rest), gz, "deflate, gzip;q=0.8")); diff != "" {
				t.Errorf("gzip=%v: handler differs from the registry (-registry +handler):\n%s", gz, diff)
			}
		}
	})
}

func TestAcceptsGzip(t *testing.T) {
	for header, want := range map[string]bool{
		"": false, "gzip": true, "deflate, gzip": true, "GZIP;q=0.5": true, "gzip;q=0": false, "identity": false,
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Accept-Encoding", header)
		if got := acceptsGzip(r); got != want {
			t.Errorf("acceptsGzip(%q) = %v, want %v", header, got, want)
		}
	}
}

// TestEncodedOnlyPublishesEncoded: an EncodedOnly collector encodes each snapshot when it
// publishes it, before any scrape, keeps no const metrics, and still serves, plain and gzipped,
// exactly the series a registered collector renders.
func TestEncodedOnlyPublishesEncoded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		want := startFixture(t).metrics()

		f := buildkitetest.New()
		comps := fixture.Populate(f, time.Now())
		f.SetToken(testToken, "read_builds")
		h := start(t, f, comps, func(o *Options) { o.EncodedOnly, o.Registerer = true, nil })
		s := h.c.snap.Load()
		if s.metrics != nil {
			t.Errorf("the published snapshot still holds %d const metrics", len(s.metrics))
		}
		if len(s.enc.gz) == 0 || s.enc.encodeErr != nil {
			t.Fatalf("the published snapshot was not encoded before the first scrape: %v", s.enc.encodeErr)
		}
		handler := h.c.Handler(prometheus.NewRegistry())
		for _, gz := range []bool{false, true} {
			if diff := cmp.Diff(want, scrape(t, handler, gz, "gzip")); diff != "" {
				t.Errorf("gzip=%v: EncodedOnly handler differs from the registered collector (-registry +handler):\n%s", gz, diff)
			}
		}
	})
}

// scrape GETs /metrics from h, with acceptEncoding when gz, checks the answer is gzipped exactly
// when asked, and returns its series as gather does.
func scrape(t *testing.T, h http.Handler, gz bool, acceptEncoding string) map[string]float64 {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if gz {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, rec.Body)
	}
	if got := rec.Header().Get("Content-Encoding") == "gzip"; got != gz {
		t.Fatalf("gzip = %v, want %v", got, gz)
	}
	var body io.Reader = rec.Body
	if gz {
		zr, err := gzip.NewReader(rec.Body)
		if err != nil {
			t.Fatal(err)
		}
		body = zr
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	mfs, err := parser.TextToMetricFamilies(body)
	if err != nil {
		t.Fatalf("gzip=%v: unparsable exposition: %v", gz, err)
	}
	return gather(t, gathererFunc(func() ([]*dto.MetricFamily, error) {
		var out []*dto.MetricFamily
		for _, mf := range mfs {
			out = append(out, mf)
		}
		return out, nil
	}))
}
