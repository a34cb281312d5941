package exposition

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// HandlerOpts configures NewHandler. The zero value is usable.
type HandlerOpts struct {
	// Logger receives gathering and encoding errors; nil discards them.
	Logger log.Logger
	// MaxRequestsInFlight limits concurrent scrapes; more are answered 503, as promhttp does.
	// 0 (or less) is no limit.
	MaxRequestsInFlight int
	// Bodies is the cache of deployment bodies, which the poll loop warms; nil makes one with
	// the defaults that nothing warms.
	Bodies *Bodies
}

// NewHandler serves /metrics: the families of exporter (the exporter's own registry: health,
// Go and process metrics; pass prometheus.Gatherers to merge several), gathered and encoded at
// each scrape, followed by the deployment families of current(), encoded once per snapshot by
// opts.Bodies. current may return nil (nothing replayed yet): only exporter's families are served.
//
// The format is negotiated as promhttp does (expfmt.NegotiateAccept over protobuf delimited,
// OpenMetrics 1.0.0 and 0.0.1, text 0.0.4) and its Content-Type is the negotiated expfmt.Format,
// escaping included. The answer is gzipped when Accept-Encoding allows it: the exporter's families
// are compressed into a gzip member, the cached body (already a gzip member) is copied after it,
// and two members back to back are one gzip stream (RFC 1952 §2.2). Otherwise the cached body is
// decompressed on the fly. OpenMetrics' single "# EOF" comes last.
//
// A Gather error is logged and what was gathered is served (promhttp.ContinueOnError); an
// encoding error is answered 500.
func NewHandler(current func() *snapshot.Snapshot, exporter prometheus.Gatherer, opts HandlerOpts) http.Handler {
	h := &handler{current: current, exporter: exporter, logger: opts.Logger, bodies: opts.Bodies, max: opts.MaxRequestsInFlight}
	if h.logger == nil {
		h.logger = log.NewNopLogger()
	}
	if h.bodies == nil {
		h.bodies = NewBodies(BodiesOpts{})
	}
	if h.max > 0 {
		h.inFlight = make(chan struct{}, h.max)
	}
	return h
}

type handler struct {
	current  func() *snapshot.Snapshot
	exporter prometheus.Gatherer
	logger   log.Logger
	bodies   *Bodies
	max      int
	inFlight chan struct{}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h.inFlight != nil {
		select {
		case h.inFlight <- struct{}{}:
			defer func() { <-h.inFlight }()
		default:
			http.Error(w, fmt.Sprintf("Limit of concurrent requests reached (%d), try again later.", h.max),
				http.StatusServiceUnavailable)
			return
		}
	}
	format := negotiate(r)
	k := kindOf(format)
	// The deployment body first: if it is cold, encoding it may take a while, and the
	// exporter's families are better gathered after.
	var gz []byte
	var size int64
	if b := h.bodies.get(h.current(), k); b != nil {
		if b.err != nil {
			level.Error(h.logger).Log("msg", "Encoding deployment metrics failed", "format", k, "err", b.err)
			http.Error(w, "encoding deployment metrics failed: "+b.err.Error(), http.StatusInternalServerError)
			return
		}
		gz, size = b.gz, b.size
	}
	head, err := h.exporterFamilies(format)
	if err != nil {
		level.Error(h.logger).Log("msg", "Encoding exporter metrics failed", "format", format, "err", err)
		http.Error(w, "encoding exporter metrics failed: "+err.Error(), http.StatusInternalServerError)
		return
	}
	var eof []byte
	if k == kindOpenMetrics {
		eof = eofText
	}

	hdr := w.Header()
	hdr.Add("Vary", "Accept")
	hdr.Add("Vary", "Accept-Encoding")
	hdr.Set("Content-Type", string(format))
	if acceptsGzip(r) {
		headGz := compress(head)
		if eof != nil {
			eof = eofGzip
		}
		hdr.Set("Content-Encoding", "gzip")
		hdr.Set("Content-Length", strconv.Itoa(len(headGz)+len(gz)+len(eof)))
		for _, p := range [][]byte{headGz, gz, eof} {
			if _, err := w.Write(p); err != nil {
				return // the scraper went away
			}
		}
		return
	}
	hdr.Set("Content-Length", strconv.FormatInt(int64(len(head))+size+int64(len(eof)), 10))
	if _, err := w.Write(head); err != nil {
		return
	}
	if len(gz) > 0 {
		zr, err := gzip.NewReader(bytes.NewReader(gz))
		if err == nil {
			_, err = io.Copy(w, zr)
		}
		if err != nil {
			level.Error(h.logger).Log("msg", "Sending deployment metrics failed", "err", err)
			return
		}
	}
	_, _ = w.Write(eof)
}

// exporterFamilies gathers and encodes the exporter's families in format. A family named like
// a deployment family is left out: it would repeat that family, which scrapers reject.
func (h *handler) exporterFamilies(format expfmt.Format) ([]byte, error) {
	if h.exporter == nil {
		return nil, nil
	}
	mfs, err := h.exporter.Gather()
	if err != nil {
		level.Error(h.logger).Log("msg", "Gathering exporter metrics failed; serving what was gathered", "err", err)
	}
	var buf bytes.Buffer
	// Never closed: "# EOF" goes after the deployment body. _created lines as the bodies have them.
	enc := expfmt.NewEncoder(&buf, format, h.bodies.opts.encoderOptions()...)
	for _, mf := range mfs {
		if familyNames[mf.GetName()] {
			level.Error(h.logger).Log("msg", "Exporter registry has a deployment family; leaving it out", "family", mf.GetName())
			continue
		}
		if err := enc.Encode(mf); err != nil {
			return nil, fmt.Errorf("%s: %w", mf.GetName(), err)
		}
	}
	return buf.Bytes(), nil
}

var gzipWriters = sync.Pool{New: func() any {
	zw, _ := gzip.NewWriterLevel(nil, gzip.BestSpeed)
	return zw
}}

// compress returns p as one gzip member, even when empty: the answer must be a gzip stream
// when there is nothing else (no exporter families, no snapshot yet).
func compress(p []byte) []byte {
	var buf bytes.Buffer
	zw := gzipWriters.Get().(*gzip.Writer)
	zw.Reset(&buf)
	_, _ = zw.Write(p) // a bytes.Buffer does not fail
	_ = zw.Close()
	gzipWriters.Put(zw)
	return buf.Bytes()
}

// eofText is OpenMetrics' last line as expfmt writes it; eofGzip, the same as a gzip member.
var eofText, eofGzip = func() ([]byte, []byte) {
	var buf bytes.Buffer
	_, _ = expfmt.FinalizeOpenMetrics(&buf)
	return buf.Bytes(), compress(buf.Bytes())
}()
