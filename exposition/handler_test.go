package exposition

import (
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/go-kit/log"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// Accept headers of real scrapers.
const (
	// Prometheus 2.42 (scrape.go scrapeAcceptHeader / scrapeAcceptHeaderWithProtobuf).
	accept242         = `application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`
	accept242Protobuf = `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1`
	// Prometheus 2.49 and later with native histograms (scrape_protocols, protobuf first).
	acceptProtoFirst = `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2`
	// Prometheus 3.x defaults (acceptHeader(DefaultScrapeProtocols, allow-utf-8)), and its
	// protobuf-first list; with metric_name_validation_scheme: legacy it asks for underscores.
	accept3         = `application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.7,application/openmetrics-text;version=0.0.1;q=0.6,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.3`
	accept3Legacy   = `application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.7,application/openmetrics-text;version=0.0.1;q=0.6,text/plain;version=1.0.0;escaping=underscores;q=0.5,text/plain;version=0.0.4;q=0.4,*/*;q=0.3`
	accept3Protobuf = `application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2`
)

// exporterRegistry stands for the exporter's own registry. Its family names sort after the
// deployment families', so that serving them first is not an accident of sorting.
func exporterRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	up := prometheus.NewGauge(prometheus.GaugeOpts{Name: "buildkite_up", Help: "1 when the last poll of every organization succeeded."})
	up.Set(1)
	errs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "buildkite_exporter_poll_errors_total", Help: "Polls of the organization that failed."}, []string{"organization"})
	errs.WithLabelValues("acme").Add(2)
	reg.MustRegister(up, errs)
	return reg
}

type response struct {
	code    int
	header  http.Header
	raw     []byte // as sent
	body    []byte // decompressed
	decoded bool
}

// scrape serves one request; it may run in a goroutine other than the test's.
func scrape(t *testing.T, h http.Handler, accept, acceptEncoding string) response {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	if acceptEncoding != "" {
		req.Header.Set("Accept-Encoding", acceptEncoding)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	r := response{code: rec.Code, header: rec.Header(), raw: rec.Body.Bytes(), body: rec.Body.Bytes()}
	if r.header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(bytes.NewReader(r.raw))
		if err == nil {
			r.body, err = io.ReadAll(zr)
		}
		if err != nil {
			t.Errorf("gunzip: %v", err) // not Fatal: scrape runs in goroutines too
		}
		r.decoded = true
	}
	if cl := r.header.Get("Content-Length"); cl != "" && r.code == http.StatusOK && cl != strconv.Itoa(len(r.raw)) {
		t.Errorf("Content-Length %s, body %d bytes", cl, len(r.raw))
	}
	return r
}

func fixed(s *snapshot.Snapshot) func() *snapshot.Snapshot {
	return func() *snapshot.Snapshot { return s }
}

// TestNegotiation checks the format each scraper gets: Content-Type exactly as promhttp (with
// OpenMetrics enabled) sends for the same Accept, and a body that is the exporter's families
// then the deployment families, as expfmt writes them in that format.
func TestNegotiation(t *testing.T) {
	s := fixture()
	exp := exporterRegistry()
	h := NewHandler(fixed(s), exp, HandlerOpts{})
	ref := promhttp.HandlerFor(prometheus.Gatherers{exp, NewGatherer(s)}, promhttp.HandlerOpts{EnableOpenMetrics: true})
	cases := []struct {
		name, accept string
		want         expfmt.Format
		promhttpToo  bool // promhttp answers the same Content-Type
	}{
		{"no Accept", "", expfmt.FmtText + "; escaping=underscores", true},
		{"Prometheus 2.42", accept242, expfmt.FmtOpenMetrics_1_0_0 + "; escaping=underscores", true},
		{"Prometheus 2.42, native histograms", accept242Protobuf, expfmt.FmtProtoDelim + "; escaping=underscores", true},
		{"Prometheus 2.49+, protobuf first", acceptProtoFirst, expfmt.FmtProtoDelim + "; escaping=underscores", true},
		{"Prometheus 3", accept3, expfmt.FmtOpenMetrics_1_0_0 + "; escaping=allow-utf-8", true},
		{"Prometheus 3, legacy names", accept3Legacy, expfmt.FmtOpenMetrics_1_0_0 + "; escaping=underscores", true},
		{"Prometheus 3, protobuf first", accept3Protobuf, expfmt.FmtProtoDelim + "; escaping=underscores", true},
		{"OpenMetrics 0.0.1", "application/openmetrics-text;version=0.0.1", expfmt.FmtOpenMetrics_0_0_1 + "; escaping=underscores", true},
		{"OpenMetrics without version", "application/openmetrics-text", expfmt.FmtOpenMetrics_0_0_1 + "; escaping=underscores", true},
		{"text", "text/plain", expfmt.FmtText + "; escaping=underscores", true},
		{"curl", "*/*", expfmt.FmtText + "; escaping=underscores", true},
		{"browser", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", expfmt.FmtText + "; escaping=underscores", true},
		{"protobuf text: not offered", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text", expfmt.FmtText + "; escaping=underscores", false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := scrape(t, h, c.accept, "gzip")
			if r.code != http.StatusOK {
				t.Fatalf("status %d: %s", r.code, r.body)
			}
			ct := expfmt.Format(r.header.Get("Content-Type"))
			if ct != c.want {
				t.Errorf("Content-Type %q, want %q", ct, c.want)
			}
			if c.promhttpToo {
				if refCT := scrape(t, ref, c.accept, "gzip").header.Get("Content-Type"); string(ct) != refCT {
					t.Errorf("Content-Type %q, promhttp sends %q", ct, refCT)
				}
			}
			want := append(gathered(t, exp, ct), gathered(t, NewGatherer(s), ct)...)
			if ct.FormatType() == expfmt.TypeOpenMetrics {
				want = append(want, "# EOF\n"...)
			}
			if !bytes.Equal(r.body, want) {
				t.Errorf("body is not the exporter's then the deployment families in %s:\n%s", ct, lineDiff(want, r.body))
			}
			if vary := r.header.Values("Vary"); strings.Join(vary, ",") != "Accept,Accept-Encoding" {
				t.Errorf("Vary %q", vary)
			}
		})
	}
}

// TestExporterFamiliesFirst reads the answers as a scraper does and checks the order of
// families, and OpenMetrics' single "# EOF" at the very end.
func TestExporterFamiliesFirst(t *testing.T) {
	h := NewHandler(fixed(fixture()), exporterRegistry(), HandlerOpts{})
	wantNames := []string{"buildkite_exporter_poll_errors_total", "buildkite_up"}
	for _, f := range families {
		wantNames = append(wantNames, f.name)
	}
	for _, accept := range []string{"", accept242, acceptProtoFirst} {
		r := scrape(t, h, accept, "gzip")
		format := expfmt.ResponseFormat(r.header)
		var names []string
		if format.FormatType() == expfmt.TypeProtoDelim {
			for _, mf := range decode(t, r.body, format) {
				names = append(names, mf.GetName())
			}
		} else {
			for line := range strings.Lines(string(r.body)) {
				if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
					name, _, _ := strings.Cut(rest, " ")
					if format.FormatType() == expfmt.TypeOpenMetrics && name == "buildkite_deployments" {
						name += "_total" // OpenMetrics names a counter family without _total
					}
					if format.FormatType() == expfmt.TypeOpenMetrics && (name == "buildkite_exporter_poll_errors" || name == "buildkite_exporter_exemplars_dropped") {
						name += "_total"
					}
					names = append(names, name)
				}
			}
		}
		if strings.Join(names, " ") != strings.Join(wantNames, " ") {
			t.Errorf("%s: families in the order %v, want %v", format, names, wantNames)
		}
		eofs := strings.Count(string(r.body), "# EOF")
		if format.FormatType() == expfmt.TypeOpenMetrics {
			if eofs != 1 || !bytes.HasSuffix(r.body, []byte("\n# EOF\n")) {
				t.Errorf("%s: %d # EOF, ends with %q", format, eofs, r.body[max(0, len(r.body)-20):])
			}
			// A complete, valid OpenMetrics exposition (expfmt's parser checks the grammar).
			if got := decode(t, r.body, format); len(got) != len(wantNames) {
				t.Errorf("%s: %d families decoded, want %d", format, len(got), len(wantNames))
			}
		} else if eofs != 0 {
			t.Errorf("%s: %d # EOF", format, eofs)
		}
	}
}

// TestCompression: gzip when Accept-Encoding allows it, the same bytes decompressed otherwise.
func TestCompression(t *testing.T) {
	h := NewHandler(fixed(fixture()), exporterRegistry(), HandlerOpts{})
	for _, accept := range []string{"", accept242, acceptProtoFirst} {
		plain := scrape(t, h, accept, "")
		if plain.header.Get("Content-Encoding") != "" {
			t.Fatalf("Content-Encoding %q without Accept-Encoding", plain.header.Get("Content-Encoding"))
		}
		for _, c := range []struct {
			acceptEncoding string
			gzip           bool
		}{
			{"gzip", true},
			{"zstd,gzip", true}, // Prometheus 3 with zstd enabled: not offered
			{"gzip, deflate, br", true},
			{"x-gzip", true},
			{"*", true},
			{"GZIP;q=0.5", true},
			{"gzip;q=0", false},
			{"identity;q=1, gzip;q=0.5", false},
			{"*;q=0", false},
			{"br, zstd", false},
			{"identity", false},
		} {
			r := scrape(t, h, accept, c.acceptEncoding)
			if r.header.Get("Content-Length") == "" {
				t.Errorf("Accept-Encoding %q: no Content-Length", c.acceptEncoding)
			}
			if r.decoded != c.gzip {
				t.Errorf("Accept-Encoding %q: gzip %v, want %v", c.acceptEncoding, r.decoded, c.gzip)
			}
			if !bytes.Equal(r.body, plain.body) {
				t.Errorf("Accept %q, Accept-Encoding %q: body differs from the uncompressed one", accept, c.acceptEncoding)
			}
		}
	}
}

// TestNothingYet: without a snapshot (nothing replayed yet) or an exporter registry the answer
// is still a valid exposition, and a valid gzip stream.
func TestNothingYet(t *testing.T) {
	h := NewHandler(fixed(nil), nil, HandlerOpts{})
	for _, accept := range []string{"", accept242, acceptProtoFirst} {
		r := scrape(t, h, accept, "gzip")
		if r.code != http.StatusOK || !r.decoded {
			t.Fatalf("status %d, gzip %v", r.code, r.decoded)
		}
		want := ""
		if strings.HasPrefix(r.header.Get("Content-Type"), "application/openmetrics-text") {
			want = "# EOF\n"
		}
		if string(r.body) != want {
			t.Errorf("%s: body %q, want %q", r.header.Get("Content-Type"), r.body, want)
		}
	}
	r := scrape(t, NewHandler(fixed(nil), exporterRegistry(), HandlerOpts{}), "", "")
	if !strings.Contains(string(r.body), "buildkite_up 1\n") {
		t.Errorf("exporter families missing:\n%s", r.body)
	}
}

type gathererFunc func() ([]*dto.MetricFamily, error)

func (f gathererFunc) Gather() ([]*dto.MetricFamily, error) { return f() }

// syncBuffer is a log sink the handler may write to from several requests.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestGatherError: what was gathered is served, and the error logged.
func TestGatherError(t *testing.T) {
	var logs syncBuffer
	failing := gathererFunc(func() ([]*dto.MetricFamily, error) { return nil, errors.New("collector exploded") })
	h := NewHandler(fixed(fixture()), prometheus.Gatherers{exporterRegistry(), failing}, HandlerOpts{Logger: log.NewLogfmtLogger(&logs)})
	r := scrape(t, h, "", "gzip")
	if r.code != http.StatusOK {
		t.Fatalf("status %d", r.code)
	}
	for _, want := range []string{"buildkite_up 1\n", "buildkite_deployments_total{"} {
		if !strings.Contains(string(r.body), want) {
			t.Errorf("body lacks %q", want)
		}
	}
	if !strings.Contains(logs.String(), "collector exploded") || !strings.Contains(logs.String(), "level=error") {
		t.Errorf("log: %s", logs.String())
	}
}

// TestEncodeError: an exporter family expfmt cannot encode is answered 500.
func TestEncodeError(t *testing.T) {
	var logs syncBuffer
	nameless := gathererFunc(func() ([]*dto.MetricFamily, error) {
		return []*dto.MetricFamily{{Type: dto.MetricType_GAUGE.Enum(), Metric: []*dto.Metric{{Gauge: &dto.Gauge{}}}}}, nil
	})
	h := NewHandler(fixed(fixture()), nameless, HandlerOpts{Logger: log.NewLogfmtLogger(&logs)})
	if r := scrape(t, h, "", "gzip"); r.code != http.StatusInternalServerError {
		t.Errorf("status %d, want 500", r.code)
	}
	if !strings.Contains(logs.String(), "Encoding exporter metrics failed") {
		t.Errorf("log: %s", logs.String())
	}
}

// TestDeploymentFamilyInExporterRegistry: a deployment family on the exporter's registry too
// would be served twice; it is left out and logged.
func TestDeploymentFamilyInExporterRegistry(t *testing.T) {
	var logs syncBuffer
	reg := exporterRegistry()
	reg.MustRegister(NewCollector(fixture()))
	h := NewHandler(fixed(fixture()), reg, HandlerOpts{Logger: log.NewLogfmtLogger(&logs)})
	r := scrape(t, h, "", "")
	if n := strings.Count(string(r.body), "# TYPE buildkite_deployments_total "); n != 1 {
		t.Errorf("buildkite_deployments_total has %d headers", n)
	}
	if !strings.Contains(logs.String(), "family=buildkite_deployments_total") {
		t.Errorf("log: %s", logs.String())
	}
}

// TestInFlightLimit: a scrape beyond MaxRequestsInFlight is answered 503 at once.
func TestInFlightLimit(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	blocking := gathererFunc(func() ([]*dto.MetricFamily, error) {
		entered <- struct{}{}
		<-release
		return nil, nil
	})
	h := NewHandler(fixed(fixture()), blocking, HandlerOpts{MaxRequestsInFlight: 1})
	done := make(chan int)
	go func() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		done <- rec.Code
	}()
	<-entered
	r := scrape(t, h, "", "")
	if r.code != http.StatusServiceUnavailable || !strings.Contains(string(r.body), "Limit of concurrent requests reached (1)") {
		t.Errorf("second scrape: %d %q", r.code, r.body)
	}
	close(release)
	if code := <-done; code != http.StatusOK {
		t.Errorf("first scrape: %d", code)
	}
	go func() { <-entered }() // the next scrape's Gather
	if r := scrape(t, h, "", ""); r.code != http.StatusOK {
		t.Errorf("scrape after the first ended: %d", r.code)
	}
}
