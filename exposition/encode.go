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
		t := &textSink{w: w}
		t.enc = expfmt.NewEncoder(&t.buf, k.bodyFormat(), opts.encoderOptions()...)
		sk = t
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
// without, and their TYPE line is cut (stripType), so the family keeps a single header.
type textSink struct {
	w   io.Writer
	enc expfmt.Encoder // writes to buf
	buf bytes.Buffer
}

func (t *textSink) chunk(f *family, metrics []*dto.Metric, first bool) error {
	mf := &dto.MetricFamily{Name: &f.name, Type: &f.typ, Metric: metrics}
	if first {
		mf.Help = &f.help
	}
	t.buf.Reset()
	if err := t.enc.Encode(mf); err != nil {
		return fmt.Errorf("encoding %s: %w", f.name, err)
	}
	out := t.buf.Bytes()
	if !first {
		var err error
		if out, err = stripType(out); err != nil {
			return fmt.Errorf("encoding %s: %w", f.name, err)
		}
	}
	_, err := t.w.Write(out)
	return err
}

func (t *textSink) end(*family) error { return nil }

// stripType cuts the one "# TYPE" line expfmt writes before the samples of a family without
// HELP, and checks that it was the only header line.
func stripType(b []byte) ([]byte, error) {
	line, rest, ok := bytes.Cut(b, []byte{'\n'})
	if !ok || !bytes.HasPrefix(line, []byte("# TYPE ")) || bytes.HasPrefix(rest, []byte("#")) {
		head, _, _ := bytes.Cut(rest, []byte{'\n'})
		return nil, fmt.Errorf("a chunk without HELP should start with one # TYPE line, got %q, %q", line, head)
	}
	return rest, nil
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
