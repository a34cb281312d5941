package exposition

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/common/expfmt"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// goldens are the fixture's deployment families as each body serves them: text 0.0.4,
// OpenMetrics (with the "# EOF" the handler appends, so the file is a complete exposition), and
// protobuf decoded by expfmt and dumped as prototext.
// The flags' goldens: OpenMetrics with _created lines (--metrics.created-timestamps) and
// protobuf with native histograms (--metrics.native-histograms).
var goldens = []struct {
	file string
	kind kind
	opts BodyOptions
}{
	{"testdata/fixture.prom", kindText, BodyOptions{}},
	{"testdata/fixture.om.txt", kindOpenMetrics, BodyOptions{}},
	{"testdata/fixture.proto.txt", kindProto, BodyOptions{}},
	{"testdata/fixture.created.om.txt", kindOpenMetrics, BodyOptions{CreatedLines: true}},
	{"testdata/fixture.native.proto.txt", kindProto, BodyOptions{NativeHistograms: true}},
}

// served is the fixture's body of k as the golden file holds it, encoded chunkSize series at
// a time.
func served(t *testing.T, k kind, chunkSize int, opts ...BodyOptions) []byte {
	t.Helper()
	var o BodyOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	var buf bytes.Buffer
	if err := encodeWith(&buf, fixture(), k, chunkSize, o); err != nil {
		t.Fatal(err)
	}
	b := buf.Bytes()
	switch k {
	case kindOpenMetrics:
		b = append(b, eofText...)
	case kindProto:
		b = protoDump(t, decode(t, b, expfmt.FmtProtoDelim))
	}
	return b
}

// TestGolden compares the fixture's bodies with testdata/. Run with -update to rewrite them.
func TestGolden(t *testing.T) {
	for _, g := range goldens {
		t.Run(filepath.Base(g.file), func(t *testing.T) {
			got := served(t, g.kind, DefaultChunkSize, g.opts)
			if *update {
				if err := os.MkdirAll(filepath.Dir(g.file), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(g.file, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(g.file)
			if err != nil {
				t.Fatalf("%v (run go test ./exposition -run TestGolden -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("%s body differs from %s (rerun with -update if the change is intended):\n%s",
					g.kind, g.file, lineDiff(want, got))
			}
		})
	}
}

// TestGoldenIsGathered checks that the text golden is what client_golang and expfmt make of
// the fixture, byte for byte: same series, same order, same header, through const metrics and
// a registry instead of the chunked encoder.
func TestGoldenIsGathered(t *testing.T) {
	want, err := os.ReadFile("testdata/fixture.prom")
	if err != nil {
		t.Fatal(err)
	}
	got := gathered(t, NewGatherer(fixture()), expfmt.FmtText)
	if !bytes.Equal(got, want) {
		t.Errorf("the gatherer's text differs from testdata/fixture.prom:\n%s", lineDiff(want, got))
	}
}

// lineDiff lists the first lines that differ.
func lineDiff(want, got []byte) string {
	w, g := bytes.Split(want, []byte("\n")), bytes.Split(got, []byte("\n"))
	var out bytes.Buffer
	shown := 0
	for i := 0; i < max(len(w), len(g)) && shown < 10; i++ {
		var wl, gl []byte
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if !bytes.Equal(wl, gl) {
			out.WriteString("line " + itoa(i+1) + ":\n  want " + string(wl) + "\n  got  " + string(gl) + "\n")
			shown++
		}
	}
	return out.String()
}
