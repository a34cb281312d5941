package exposition

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// kind is a body the cache keeps: one per distinct encoding. OpenMetrics 1.0.0 and 0.0.1 share
// one (expfmt writes both with the same encoder), and the escaping scheme a scraper asks for
// does not matter here: every deployment metric and label name is a legacy name, which no
// scheme changes (TestBodyIgnoresEscaping checks it).
type kind int

const (
	kindText kind = iota
	kindOpenMetrics
	kindProto
	numKinds
)

func (k kind) String() string {
	return [...]string{"text", "openmetrics", "protobuf"}[k]
}

// kindOf is the body for a negotiated format.
func kindOf(f expfmt.Format) kind {
	switch f.FormatType() {
	case expfmt.TypeProtoDelim:
		return kindProto
	case expfmt.TypeOpenMetrics:
		return kindOpenMetrics
	}
	return kindText
}

// bodyFormat is what a kind's body is encoded with. allow-utf-8 (no escaping) spares
// model.EscapeMetricFamily copying every chunk's metric slice to escape nothing.
func (k kind) bodyFormat() expfmt.Format {
	f := [...]expfmt.Format{expfmt.FmtText, expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtProtoDelim}[k]
	return f.WithEscapingScheme(model.NoEscaping)
}

// encode writes the deployment families of s to w in k's encoding, chunkSize series at a time.
// An OpenMetrics body has no "# EOF": the handler writes it after the body.
func encode(w io.Writer, s *snapshot.Snapshot, k kind, chunkSize int) error {
	return encodeWith(w, s, k, chunkSize, BodyOptions{})
}

// encodeWith is encode with the flags' options.
func encodeWith(w io.Writer, s *snapshot.Snapshot, k kind, chunkSize int, opts BodyOptions) error {
	var sk sink
	if k == kindProto {
		sk = &protoSink{w: w}
	} else {
		sk = newTextSink(w, k, opts)
	}
	c := newChunker(chunkSize, sk)
	c.opts = options{native: opts.NativeHistograms}
	return c.render(s)
}

// BodyOptions are what flags change in the /metrics bodies. Whatever they say, protobuf
// carries exemplars and created timestamps, OpenMetrics carries exemplars, and text 0.0.4
// carries neither (its format has no place for them).
type BodyOptions struct {
	// NativeHistograms (--metrics.native-histograms) adds the native (exponential) form to the
	// deployment histograms in protobuf, the only format that carries it; the classic buckets
	// stay.
	NativeHistograms bool
	// CreatedLines (--metrics.created-timestamps) writes OpenMetrics _created lines, which a
	// Prometheus before 2.50 (or without created-timestamp-zero-ingestion) stores as series of
	// their own. Protobuf carries created timestamps always, in fields of the counter or
	// histogram.
	CreatedLines bool
}

func (o BodyOptions) encoderOptions() []expfmt.EncoderOption {
	if o.CreatedLines {
		return []expfmt.EncoderOption{expfmt.WithCreatedLines()}
	}
	return nil
}

// textSink encodes chunks with expfmt's text or OpenMetrics encoder. Both write HELP only when
// the family has one and TYPE always: a family's first chunk goes with its HELP, later ones
// without, and their TYPE line is cut (typeStripper), so the family keeps a single header. The
// encoder writes through the stripper straight to w: a chunk of 2,000 histograms is megabytes
// of text, which a buffer per chunk would copy once more and grow at every encode.
type textSink struct {
	enc   expfmt.Encoder // writes to strip
	strip typeStripper
}

func newTextSink(w io.Writer, k kind, opts BodyOptions) *textSink {
	t := &textSink{strip: typeStripper{w: w}}
	t.enc = expfmt.NewEncoder(&t.strip, k.bodyFormat(), opts.encoderOptions()...)
	return t
}

func (t *textSink) chunk(f *family, metrics []*dto.Metric, first bool) error {
	mf := &dto.MetricFamily{Name: &f.name, Type: &f.typ, Metric: metrics}
	if first {
		mf.Help = &f.help
	}
	t.strip.begin(!first)
	err := t.enc.Encode(mf)
	if err == nil {
		err = t.strip.finish()
	}
	if err != nil {
		return fmt.Errorf("encoding %s: %w", f.name, err)
	}
	return nil
}

func (t *textSink) end(*family) error { return nil }

// typeStripper passes what the encoder writes on to w, except, while cutting, the one "# TYPE"
// line expfmt writes before the samples of a family without HELP; it checks that this was the
// only header line.
type typeStripper struct {
	w io.Writer
	// cutting: the chunk's first line is not through yet; line holds what came of it (a TYPE
	// line is a name and a type: bounded, but a longer one is an error rather than a buffer).
	cutting bool
	line    []byte
	// checkNext: the TYPE line is cut; the chunk's next byte must not start another header.
	checkNext bool
}

const maxTypeLine = 512

func (s *typeStripper) begin(cut bool) {
	s.cutting, s.checkNext, s.line = cut, false, s.line[:0]
}

func (s *typeStripper) Write(p []byte) (int, error) {
	n := len(p)
	if s.cutting {
		i := bytes.IndexByte(p, '\n')
		if i < 0 {
			if len(s.line)+len(p) > maxTypeLine {
				return 0, s.badHeader(p)
			}
			s.line = append(s.line, p...)
			return n, nil
		}
		s.line = append(s.line, p[:i]...)
		if !bytes.HasPrefix(s.line, []byte("# TYPE ")) || len(s.line) > maxTypeLine {
			return 0, s.badHeader(p[i+1:])
		}
		s.cutting, s.checkNext = false, true
		p = p[i+1:]
	}
	if s.checkNext && len(p) > 0 {
		if p[0] == '#' {
			return 0, s.badHeader(p)
		}
		s.checkNext = false
	}
	if len(p) == 0 {
		return n, nil
	}
	if _, err := s.w.Write(p); err != nil {
		return 0, err
	}
	return n, nil
}

// finish reports a chunk whose TYPE line never ended.
func (s *typeStripper) finish() error {
	if s.cutting {
		return s.badHeader(nil)
	}
	return nil
}

func (s *typeStripper) badHeader(rest []byte) error {
	line := s.line[:min(len(s.line), 80)]
	head, _, _ := bytes.Cut(rest[:min(len(rest), 80)], []byte{'\n'})
	return fmt.Errorf("a chunk without HELP should start with one # TYPE line, got %q, %q", line, head)
}

// protoSink writes one length-delimited MetricFamily message per family (as protodelim does),
// however many chunks it comes in: a message's fields may be serialised piece by piece, and
// repeated-field entries concatenated (protobuf encoding: "last one wins" for scalars, append
// for repeated fields). So the family's name, help and type are marshalled once, then each
// chunk as a MetricFamily holding only that chunk's metrics; the length prefix is written when
// the family ends, which is why its bytes (not its dto values) are buffered.
type protoSink struct {
	w   io.Writer
	buf []byte
}

func (p *protoSink) chunk(f *family, metrics []*dto.Metric, first bool) error {
	var err error
	if first {
		p.buf, err = proto.MarshalOptions{}.MarshalAppend(p.buf[:0], &dto.MetricFamily{Name: &f.name, Help: &f.help, Type: &f.typ})
		if err != nil {
			return fmt.Errorf("encoding %s: %w", f.name, err)
		}
	}
	p.buf, err = proto.MarshalOptions{}.MarshalAppend(p.buf, &dto.MetricFamily{Metric: metrics})
	if err != nil {
		return fmt.Errorf("encoding %s: %w", f.name, err)
	}
	return nil
}

func (p *protoSink) end(*family) error {
	var size [binary.MaxVarintLen64]byte
	if _, err := p.w.Write(protowire.AppendVarint(size[:0], uint64(len(p.buf)))); err != nil {
		return err
	}
	_, err := p.w.Write(p.buf)
	return err
}
