package exposition

import (
	"bytes"
	"errors"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"google.golang.org/protobuf/encoding/prototext"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// encoded is what encode writes for s, uncompressed.
func encoded(t testing.TB, s *snapshot.Snapshot, k kind, chunkSize int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := encode(&buf, s, k, chunkSize); err != nil {
		t.Fatalf("encode %v: %v", k, err)
	}
	return buf.Bytes()
}

// gathered is what expfmt writes for the families g gathers, all at once, in format (without
// OpenMetrics' "# EOF").
func gathered(t testing.TB, g interface {
	Gather() ([]*dto.MetricFamily, error)
}, format expfmt.Format) []byte {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	enc := expfmt.NewEncoder(&buf, format)
	for _, mf := range mfs {
		if err := enc.Encode(mf); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// decode reads every family of an exposition in format, in the order of the exposition for
// protobuf and sorted by name for the text formats, which expfmt parses into a map. An
// OpenMetrics body without "# EOF" (a cached body) gets one.
func decode(t testing.TB, b []byte, format expfmt.Format) []*dto.MetricFamily {
	t.Helper()
	if format.FormatType() == expfmt.TypeOpenMetrics && !bytes.HasSuffix(b, eofText) {
		b = append(slices.Clip(b), eofText...)
	}
	dec := expfmt.NewDecoder(bytes.NewReader(b), format)
	var out []*dto.MetricFamily
	for {
		mf := &dto.MetricFamily{}
		err := dec.Decode(mf)
		if errors.Is(err, io.EOF) {
			if format.FormatType() != expfmt.TypeProtoDelim {
				slices.SortFunc(out, func(a, b *dto.MetricFamily) int { return strings.Compare(a.GetName(), b.GetName()) })
			}
			return out
		}
		if err != nil {
			t.Fatalf("decoding %s: %v", format, err)
		}
		out = append(out, mf)
	}
}

// protoDump writes decoded families as multi-line prototext. protobuf-go adds a random space
// after some field names to keep its text output from being relied on; it is removed so that
// the golden file does not change from one build to the next.
func protoDump(t testing.TB, mfs []*dto.MetricFamily) []byte {
	t.Helper()
	var buf bytes.Buffer
	for _, mf := range mfs {
		b, err := prototext.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(mf)
		if err != nil {
			t.Fatal(err)
		}
		buf.WriteString("family {\n")
		buf.Write(detrandSpace.ReplaceAll(b, []byte("$1 ")))
		buf.WriteString("}\n")
	}
	return buf.Bytes()
}

var detrandSpace = regexp.MustCompile(`(?m)^( *\w+:?)  +`)

func itoa(i int) string { return strconv.Itoa(i) }
