package exposition

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/cputime"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// The benchmarks use the worst case of collector/bench_test.go: components × 3 environments
// where every per-environment series exists (≈152,000 series at 1,000 components). They report
// CPU time next to wall time, the machines they run on being shared.

var benchSizes = []int{1000, 10000}

var benchSnapshots sync.Map // components → *snapshot.Snapshot

func benchSnapshot(components int) *snapshot.Snapshot {
	if s, ok := benchSnapshots.Load(components); ok {
		return s.(*snapshot.Snapshot)
	}
	s := synthetic(components, true)
	benchSnapshots.Store(components, s)
	return s
}

// accepts are what a scraper of each body sends.
var accepts = [numKinds]string{kindText: "", kindOpenMetrics: accept242, kindProto: acceptProtoFirst}

// BenchmarkEncode is the per-poll cost of one body: rendering every family in chunks, encoding
// and gzipping it. A poll cycle pays it once per format scrapers asked for.
func BenchmarkEncode(b *testing.B) {
	for _, n := range benchSizes {
		s := benchSnapshot(n)
		for k := range numKinds {
			b.Run(fmt.Sprintf("components=%d/%v", n, k), func(b *testing.B) {
				bodies := NewBodies(BodiesOpts{})
				var e *body
				b.ReportAllocs()
				cpu := cputime.Process()
				for b.Loop() {
					e = &body{}
					bodies.fill(e, s, k)
				}
				b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
				if e.err != nil {
					b.Fatal(e.err)
				}
				b.ReportMetric(float64(len(e.gz)), "gzip-bytes")
				b.ReportMetric(float64(e.size), "plain-bytes")
			})
		}
	}
}

// BenchmarkWarm is a whole poll cycle's encoding when scrapers ask for all three bodies.
func BenchmarkWarm(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("components=%d", n), func(b *testing.B) {
			s := benchSnapshot(n)
			bodies := NewBodies(BodiesOpts{})
			for k := range numKinds {
				bodies.get(&snapshot.Snapshot{Taken: s.Taken}, k) // asks for every body
			}
			cpu := cputime.Process()
			i := 0
			for b.Loop() {
				next := *s // a new snapshot per poll, same content
				i++
				next.Taken = s.Taken.Add(time.Duration(i) * time.Minute)
				bodies.Warm(&next)
			}
			b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
		})
	}
}

// BenchmarkScrape is one scrape with the body warm: gathering and encoding the exporter's
// registry (empty, as in collector/bench_test.go, or Go and process collectors), then copying
// the cached body, or decompressing it for a scraper without gzip.
func BenchmarkScrape(b *testing.B) {
	goProcess := prometheus.NewRegistry()
	goProcess.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	exporters := []struct {
		name string
		reg  prometheus.Gatherer
	}{{"empty", prometheus.NewRegistry()}, {"go+process", goProcess}}
	for _, n := range benchSizes {
		s := benchSnapshot(n)
		bodies := NewBodies(BodiesOpts{})
		for _, exp := range exporters {
			h := NewHandler(func() *snapshot.Snapshot { return s }, exp.reg, HandlerOpts{Bodies: bodies})
			benchScrape(b, fmt.Sprintf("components=%d/exporter=%s", n, exp.name), h)
		}
	}
}

func benchScrape(b *testing.B, name string, h http.Handler) {
	for k := range numKinds {
		for _, gz := range []bool{true, false} {
			b.Run(fmt.Sprintf("%s/%v/gzip=%v", name, k, gz), func(b *testing.B) {
				req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
				if accepts[k] != "" {
					req.Header.Set("Accept", accepts[k])
				}
				if gz {
					req.Header.Set("Accept-Encoding", "gzip")
				}
				w := &discard{}
				h.ServeHTTP(w, req) // warms the body; Warm does it after a poll
				b.ReportAllocs()
				cpu := cputime.Process()
				for b.Loop() {
					w.n, w.h = 0, nil
					h.ServeHTTP(w, req)
					if w.code != 0 && w.code != http.StatusOK {
						b.Fatalf("status %d", w.code)
					}
				}
				b.ReportMetric(float64(cputime.Process()-cpu)/float64(b.N)/1e6, "cpu-ms/op")
				b.ReportMetric(float64(w.n), "bytes")
			})
		}
	}
}

// BenchmarkHeld measures the heap the cached bodies of one snapshot hold, all three formats.
func BenchmarkHeld(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("components=%d", n), func(b *testing.B) {
			s := benchSnapshot(n)
			var held, gz uint64
			for b.Loop() {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				bodies := NewBodies(BodiesOpts{})
				gz = 0
				for k := range numKinds {
					gz += uint64(len(bodies.get(s, k).gz))
				}
				runtime.GC()
				runtime.ReadMemStats(&after)
				held = after.HeapAlloc - before.HeapAlloc
				runtime.KeepAlive(bodies)
			}
			b.ReportMetric(float64(held), "held-bytes")
			b.ReportMetric(float64(gz), "gzip-bytes")
			b.ReportMetric(float64(countSeries(b, s)), "series")
		})
	}
}

// discard is a ResponseWriter that counts the body and keeps nothing, so that the benchmark
// does not measure a recorder's buffer growth.
type discard struct {
	h    http.Header
	code int
	n    int
}

func (d *discard) Header() http.Header {
	if d.h == nil {
		d.h = http.Header{}
	}
	return d.h
}

func (d *discard) WriteHeader(code int) { d.code = code }

func (d *discard) Write(p []byte) (int, error) {
	d.n += len(p)
	return len(p), nil
}
