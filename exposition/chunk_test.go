package exposition

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// wireFormat is the format a kind is checked against: what a scraper negotiating it gets.
var wireFormat = [numKinds]expfmt.Format{expfmt.FmtText, expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtProtoDelim}

// TestChunkedEqualsGathered encodes snapshots in chunks (of one series, of a few, and of the
// default size with a snapshot where families span several) and checks, in every format, that
// the body is byte for byte what expfmt writes for the gatherer's families, all at once, and
// decodes to the same families.
func TestChunkedEqualsGathered(t *testing.T) {
	big := synthetic(300, true) // buildkite_deployments_total alone has 2,700 series
	if n := countSeries(t, big); n < 3*DefaultChunkSize {
		t.Fatalf("the big snapshot has %d series, not several chunks' worth", n)
	}
	cases := []struct {
		name  string
		s     *snapshot.Snapshot
		sizes []int
		// decodeOM: expfmt's OpenMetrics parser takes milliseconds a line; equal bytes
		// decode the same anyway.
		decodeOM bool
	}{
		{"fixture", fixture(), []int{1, 2, 7, DefaultChunkSize}, true},
		{"big", big, []int{7, DefaultChunkSize}, false},
		{"quiet", synthetic(20, false), []int{5}, false},
		{"empty", &snapshot.Snapshot{}, []int{1}, true},
	}
	for _, c := range cases {
		for _, opts := range []BodyOptions{{}, {NativeHistograms: true}} {
			g := NewGathererWith(c.s, opts)
			for k := range numKinds {
				want := gathered(t, g, wireFormat[k])
				decodes := k != kindOpenMetrics || c.decodeOM
				var wantFams []*dto.MetricFamily
				if decodes {
					wantFams = decode(t, want, wireFormat[k])
				}
				for _, size := range c.sizes {
					t.Run(fmt.Sprintf("%s/%v/native=%v/chunk=%d", c.name, k, opts.NativeHistograms, size), func(t *testing.T) {
						var buf bytes.Buffer
						if err := encodeWith(&buf, c.s, k, size, opts); err != nil {
							t.Fatal(err)
						}
						got := buf.Bytes()
						if !bytes.Equal(got, want) {
							t.Errorf("body differs from the gathered families (%d bytes, want %d)", len(got), len(want))
							if k != kindProto {
								t.Log(lineDiff(want, got))
							}
						}
						if decodes && (k != kindOpenMetrics || size == c.sizes[0]) {
							sameFamilies(t, decode(t, got, wireFormat[k]), wantFams)
						}
					})
				}
			}
		}
	}
}

// TestProtoOneMessagePerFamily checks that a family encoded in many chunks is one delimited
// message, equal to the family Gather returns.
func TestProtoOneMessagePerFamily(t *testing.T) {
	s := synthetic(300, true)
	mfs, err := NewGatherer(s).Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := decode(t, encoded(t, s, kindProto, 7), expfmt.FmtProtoDelim)
	if len(got) != len(families) || len(got) != len(mfs) {
		t.Fatalf("%d messages, %d families gathered, %d families", len(got), len(mfs), len(families))
	}
	for i, mf := range got {
		if mf.GetName() != families[i].name {
			t.Errorf("message %d is %s, want %s", i, mf.GetName(), families[i].name)
		}
		if !proto.Equal(mf, mfs[i]) {
			t.Errorf("%s differs from the gathered family", mf.GetName())
		}
	}
}

// TestBodyIgnoresEscaping backs the cache's one body per kind: whatever escaping a scraper
// asks for, expfmt writes the deployment families the same, their names being legacy names.
func TestBodyIgnoresEscaping(t *testing.T) {
	s := fixture()
	g := NewGatherer(s)
	formats := [numKinds][]expfmt.Format{
		{expfmt.FmtText},
		{expfmt.FmtOpenMetrics_1_0_0, expfmt.FmtOpenMetrics_0_0_1},
		{expfmt.FmtProtoDelim},
	}
	for k := range numKinds {
		body := encoded(t, s, k, 3)
		for _, f := range formats[k] {
			for _, scheme := range []model.EscapingScheme{model.NoEscaping, model.UnderscoreEscaping, model.DotsEscaping, model.ValueEncodingEscaping} {
				ff := f.WithEscapingScheme(scheme)
				if kindOf(ff) != k {
					t.Fatalf("%s is not a %v format", ff, k)
				}
				if !bytes.Equal(gathered(t, g, ff), body) {
					t.Errorf("%v body differs from the gathered families in %s", k, ff)
				}
			}
		}
	}
}

// stripType runs b through a typeStripper cutting a chunk's TYPE line, in writes of every
// size from one byte up, and returns what passed (the same for every size) or the error.
func stripType(b []byte) ([]byte, error) {
	var want []byte
	for size := 1; size <= len(b)+1; size++ {
		var out bytes.Buffer
		s := typeStripper{w: &out}
		s.begin(true)
		var err error
		for i := 0; i < len(b) && err == nil; i += size {
			_, err = s.Write(b[i:min(len(b), i+size)])
		}
		if err == nil {
			err = s.finish()
		}
		if err != nil {
			return nil, err
		}
		if size > 1 && !bytes.Equal(out.Bytes(), want) {
			return nil, fmt.Errorf("writes of %d bytes passed %q, of 1 byte %q", size, out.Bytes(), want)
		}
		want = out.Bytes()
	}
	return want, nil
}

func TestStripType(t *testing.T) {
	got, err := stripType([]byte("# TYPE a gauge\na 1\nb 2\n"))
	if err != nil || string(got) != "a 1\nb 2\n" {
		t.Errorf("stripType = %q, %v", got, err)
	}
	long := "# TYPE " + strings.Repeat("a", maxTypeLine) + " gauge\na 1\n"
	for _, bad := range []string{"a 1\n", "# HELP a x\n# TYPE a gauge\na 1\n", "# TYPE a gauge\n# UNIT a seconds\na 1\n", "# TYPE a gauge", long} {
		if _, err := stripType([]byte(bad)); err == nil {
			t.Errorf("stripType(%q) did not fail", bad)
		}
	}
	// A chunk that is not cut passes whole, header and all.
	var out bytes.Buffer
	s := typeStripper{w: &out}
	s.begin(false)
	in := "# HELP a x\n# TYPE a gauge\na 1\n"
	if _, err := s.Write([]byte(in)); err != nil || s.finish() != nil || out.String() != in {
		t.Errorf("uncut chunk passed %q, %v", out.String(), err)
	}
}

// TestHistogramRepeatedBounds: a repeated bound is one bucket, as in a const histogram.
func TestHistogramRepeatedBounds(t *testing.T) {
	s := fixture()
	e := &s.Components[0].Environments[0]
	e.LeadTime = &snapshot.Histogram{Bounds: []float64{10, 10, 20}, Counts: []uint64{1, 2, 3, 4}, Sum: 99, Count: 10}
	e.Recovery = &snapshot.Histogram{Bounds: nil, Counts: []uint64{5}, Sum: 1, Count: 5}
	want := gathered(t, NewGatherer(s), expfmt.FmtText)
	for _, size := range []int{1, DefaultChunkSize} {
		if got := encoded(t, s, kindText, size); !bytes.Equal(got, want) {
			t.Errorf("chunk=%d:\n%s", size, lineDiff(want, got))
		}
	}
}

func sameFamilies(t *testing.T, got, want []*dto.MetricFamily) {
	t.Helper()
	if len(got) != len(want) {
		t.Errorf("%d families, want %d", len(got), len(want))
		return
	}
	for i := range got {
		if !proto.Equal(got[i], want[i]) {
			t.Errorf("family %s differs from %s", got[i].GetName(), want[i].GetName())
		}
	}
}

// countSeries counts the series of s's families as the old benchmarks did: a histogram is its
// buckets, +Inf, _sum and _count.
func countSeries(t testing.TB, s *snapshot.Snapshot) int {
	t.Helper()
	mfs, err := NewGatherer(s).Gather()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			n++
			if h := m.GetHistogram(); h != nil {
				n += len(h.GetBucket()) + 2
			}
		}
	}
	return n
}
