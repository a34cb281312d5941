package collector

import (
	"bytes"
	"compress/gzip"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
)

// emitter receives the series buildSnapshot renders. labels are in the order the desc names
// them; an emitter may modify the slice.
type emitter interface {
	sample(d *prometheus.Desc, t prometheus.ValueType, v float64, labels ...string)
	histogram(d *prometheus.Desc, h *histogram, bounds []float64, labels ...string)
}

// constEmitter makes const metrics, for Collect and for encoding through a registry.
type constEmitter struct{ metrics []prometheus.Metric }

func (e *constEmitter) sample(d *prometheus.Desc, t prometheus.ValueType, v float64, l ...string) {
	e.metrics = append(e.metrics, prometheus.MustNewConstMetric(d, t, v, validLabels(l)...))
}

func (e *constEmitter) histogram(d *prometheus.Desc, h *histogram, bounds []float64, l ...string) {
	e.metrics = append(e.metrics, constHist(d, h, bounds, l...))
}

// textEmitter writes the text exposition (format 0.0.4, as expfmt writes it) directly, without
// const metrics or dto objects: each family goes to its own gzip member, the members are
// concatenated in family-name order by finish, which makes one valid gzip stream (RFC 1952 §2.2)
// with each family's HELP, TYPE and samples contiguous, as the registry's Gather and expfmt
// would produce them (series order inside a family may differ; it does not matter to parsers).
type textEmitter struct {
	fams map[*prometheus.Desc]*familyWriter
	err  error
}

// textFlushAt is how much text a family buffers before compressing it.
const textFlushAt = 32 << 10

type familyWriter struct {
	info *familyInfo
	gz   bytes.Buffer
	zw   *gzip.Writer
	buf  []byte // pending text, not yet compressed
}

func newTextEmitter() *textEmitter {
	return &textEmitter{fams: map[*prometheus.Desc]*familyWriter{}}
}

// family returns d's writer, writing the family's HELP and TYPE the first time.
func (e *textEmitter) family(d *prometheus.Desc, typ string) *familyWriter {
	if f := e.fams[d]; f != nil {
		return f
	}
	info := familyInfos[d]
	if info == nil {
		panic("collector: desc without a family table entry: " + d.String())
	}
	f := &familyWriter{info: info, buf: make([]byte, 0, textFlushAt+4096)}
	f.zw, _ = gzip.NewWriterLevel(&f.gz, gzip.BestSpeed)
	f.buf = append(f.buf, "# HELP "...)
	f.buf = append(f.buf, info.name...)
	f.buf = append(f.buf, ' ')
	f.buf = appendEscaped(f.buf, info.help, false)
	f.buf = append(f.buf, "\n# TYPE "...)
	f.buf = append(f.buf, info.name...)
	f.buf = append(f.buf, ' ')
	f.buf = append(f.buf, typ...)
	f.buf = append(f.buf, '\n')
	e.fams[d] = f
	return f
}

func (f *familyWriter) flush(e *textEmitter, final bool) {
	if len(f.buf) >= textFlushAt || (final && len(f.buf) > 0) {
		if _, err := f.zw.Write(f.buf); err != nil && e.err == nil {
			e.err = err
		}
		f.buf = f.buf[:0]
	}
}

func (e *textEmitter) sample(d *prometheus.Desc, t prometheus.ValueType, v float64, l ...string) {
	typ := "gauge"
	if t == prometheus.CounterValue {
		typ = "counter"
	}
	f := e.family(d, typ)
	f.buf = f.appendSeries(f.buf, "", l, false, 0)
	f.buf = append(f.buf, ' ')
	f.buf = appendFloat(f.buf, v)
	f.buf = append(f.buf, '\n')
	f.flush(e, false)
}

func (e *textEmitter) histogram(d *prometheus.Desc, h *histogram, bounds []float64, l ...string) {
	f := e.family(d, "histogram")
	var acc uint64
	infSeen := false
	for i, b := range bounds {
		if i < len(h.Counts) {
			acc += h.Counts[i]
		}
		if i+1 < len(bounds) && bounds[i+1] == b {
			continue // a const histogram's bucket map keeps one entry per bound
		}
		f.buf = f.appendSeries(f.buf, "_bucket", l, true, b)
		f.buf = append(f.buf, ' ')
		f.buf = appendFloat(f.buf, float64(acc))
		f.buf = append(f.buf, '\n')
		infSeen = infSeen || math.IsInf(b, +1)
	}
	if !infSeen {
		f.buf = f.appendSeries(f.buf, "_bucket", l, true, math.Inf(+1))
		f.buf = append(f.buf, ' ')
		f.buf = appendFloat(f.buf, float64(h.Count))
		f.buf = append(f.buf, '\n')
	}
	f.buf = f.appendSeries(f.buf, "_sum", l, false, 0)
	f.buf = append(f.buf, ' ')
	f.buf = appendFloat(f.buf, h.Sum)
	f.buf = append(f.buf, '\n')
	f.buf = f.appendSeries(f.buf, "_count", l, false, 0)
	f.buf = append(f.buf, ' ')
	f.buf = appendFloat(f.buf, float64(h.Count))
	f.buf = append(f.buf, '\n')
	f.flush(e, false)
}

// appendSeries appends name+suffix and the labels, sorted by name as const metrics sort them,
// then le when withLE, as expfmt writes them.
func (f *familyWriter) appendSeries(b []byte, suffix string, values []string, withLE bool, le float64) []byte {
	info := f.info
	if len(values) != len(info.labels) {
		panic("collector: " + info.name + ": wrong number of label values")
	}
	b = append(b, info.name...)
	b = append(b, suffix...)
	if len(values) == 0 && !withLE {
		return b
	}
	sep := byte('{')
	for _, i := range info.order {
		b = append(b, sep)
		sep = ','
		b = append(b, info.labels[i]...)
		b = append(b, '=', '"')
		b = appendEscaped(b, values[i], true)
		b = append(b, '"')
	}
	if withLE {
		b = append(b, sep)
		b = append(b, `le="`...)
		b = appendFloat(b, le)
		b = append(b, '"')
	}
	return append(b, '}')
}

// finish compresses what is pending and returns the gzip members in family-name order.
func (e *textEmitter) finish() ([]byte, error) {
	fams := make([]*familyWriter, 0, len(e.fams))
	size := 0
	for _, f := range e.fams {
		f.flush(e, true)
		if err := f.zw.Close(); err != nil && e.err == nil {
			e.err = err
		}
		f.buf = nil
		fams = append(fams, f)
		size += f.gz.Len()
	}
	if e.err != nil {
		return nil, e.err
	}
	slices.SortFunc(fams, func(a, b *familyWriter) int {
		switch {
		case a.info.name < b.info.name:
			return -1
		case a.info.name > b.info.name:
			return 1
		}
		return 0
	})
	out := make([]byte, 0, size)
	for _, f := range fams {
		out = append(out, f.gz.Bytes()...)
	}
	return out, nil
}

// appendEscaped escapes as the text format requires: \ and newline, and " in label values.
// Invalid UTF-8 is replaced as validLabels replaces it.
func appendEscaped(b []byte, s string, quote bool) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\\':
			b = append(b, '\\', '\\')
		case c == '\n':
			b = append(b, '\\', 'n')
		case c == '"' && quote:
			b = append(b, '\\', '"')
		default:
			b = append(b, c)
		}
	}
	return b
}

// appendFloat formats f as expfmt's writeFloat does.
func appendFloat(b []byte, f float64) []byte {
	switch {
	case f == 1:
		return append(b, '1')
	case f == 0:
		return append(b, '0')
	case f == -1:
		return append(b, "-1"...)
	case math.IsNaN(f):
		return append(b, "NaN"...)
	case math.IsInf(f, +1):
		return append(b, "+Inf"...)
	case math.IsInf(f, -1):
		return append(b, "-Inf"...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, 64)
}
