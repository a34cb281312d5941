package collector

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/go-kit/log/level"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
)

// encoded is a snapshot's text exposition, gzipped, made once per snapshot. Only the compressed
// form is kept: Prometheus always asks for gzip, and the plain text of 10,000 components is over
// 100 MB. A scraper without gzip gets it decompressed on the fly.
type encoded struct {
	once      sync.Once
	gz        []byte
	encodeErr error
}

// encode renders s once; with release it then drops s's const metrics, which only encoding
// needed. Safe for concurrent use.
func (s *snapshot) encode(release bool) *encoded {
	s.enc.once.Do(func() {
		reg := prometheus.NewRegistry()
		if err := reg.Register(snapshotCollector{s}); err != nil {
			s.enc.encodeErr = err
			return
		}
		mfs, err := reg.Gather()
		if err != nil {
			s.enc.encodeErr = err
			return
		}
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		enc := expfmt.NewEncoder(zw, textFormat)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				s.enc.encodeErr = err
				return
			}
		}
		if err := zw.Close(); err != nil {
			s.enc.encodeErr = err
			return
		}
		s.enc.gz = gz.Bytes()
		if release {
			s.metrics = nil
		}
	})
	return &s.enc
}

var textFormat = expfmt.NewFormat(expfmt.TypeTextPlain)

// snapshotCollector sends a snapshot's metrics.
type snapshotCollector struct{ s *snapshot }

func (c snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

func (c snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range c.s.metrics {
		ch <- m
	}
}

// Handler serves /metrics: the families of rest (the exporter's own registry, which must not
// also hold this Collector), encoded at each scrape, followed by this Collector's series, encoded
// once per poll and reused by every scrape until the next. With 1,000 components the deployment
// series are over 100,000 lines; encoding and compressing them at each scrape costs more CPU than
// the rest of the exporter. It always answers in the text format (version 0.0.4), gzipped when
// the scraper accepts it, as Prometheus does.
func (c *Collector) Handler(rest prometheus.Gatherer) http.Handler {
	c.served.Store(true)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mfs, err := rest.Gather()
		if err != nil {
			// Serve what could be gathered, as promhttp.ContinueOnError does.
			level.Error(c.logger).Log("msg", "Gathering exporter metrics failed", "err", err)
		}
		e := c.snap.Load().encode(c.encodedOnly)
		if e.encodeErr != nil {
			level.Error(c.logger).Log("msg", "Encoding deployment metrics failed", "err", e.encodeErr)
			http.Error(w, "encoding deployment metrics failed: "+e.encodeErr.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", string(textFormat))
		var head bytes.Buffer
		enc := expfmt.NewEncoder(&head, textFormat)
		for _, mf := range mfs {
			if err := enc.Encode(mf); err != nil {
				level.Error(c.logger).Log("msg", "Encoding exporter metrics failed", "family", mf.GetName(), "err", err)
			}
		}
		if !acceptsGzip(r) {
			_, _ = w.Write(head.Bytes())
			zr, err := gzip.NewReader(bytes.NewReader(e.gz))
			if err != nil {
				level.Error(c.logger).Log("msg", "Decompressing deployment metrics failed", "err", err)
				return
			}
			_, _ = io.Copy(w, zr)
			return
		}
		// Two gzip members back to back form one valid gzip stream (RFC 1952 §2.2), which
		// Prometheus (Go's gzip.Reader) reads as the concatenation.
		w.Header().Set("Content-Encoding", "gzip")
		zw := gzip.NewWriter(w)
		_, _ = zw.Write(head.Bytes())
		if err := zw.Close(); err != nil {
			return
		}
		_, _ = w.Write(e.gz)
	})
}

func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		enc, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if !strings.EqualFold(strings.TrimSpace(enc), "gzip") {
			continue
		}
		q, err := strconv.ParseFloat(strings.TrimPrefix(strings.ReplaceAll(params, " ", ""), "q="), 64)
		return params == "" || err != nil || q > 0
	}
	return false
}
