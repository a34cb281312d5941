package exposition

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// poll publishes a copy of the fixture taken at minute m with its first component renamed, so
// that each snapshot's body is recognisable.
func poll(cur *atomic.Pointer[snapshot.Snapshot], m int, label string) *snapshot.Snapshot {
	s := fixture()
	s.Taken = at(m)
	s.Components[0].Label = label
	cur.Store(s)
	return s
}

// TestEncodedOncePerSnapshot counts encodes: one per (snapshot, body) however many scrapes,
// concurrent or not; Warm encodes after a poll what was asked for within WarmFor, so scrapes
// then encode nothing; a scrape holding an older snapshot gets the newer body.
func TestEncodedOncePerSnapshot(t *testing.T) {
	clock := &fakeClock{now: base}
	bodies := NewBodies(BodiesOpts{ChunkSize: 5, WarmFor: 10 * time.Minute, Now: clock.Now})
	var cur atomic.Pointer[snapshot.Snapshot]
	h := NewHandler(cur.Load, exporterRegistry(), HandlerOpts{Bodies: bodies})
	accepts := []string{"", accept242, "application/openmetrics-text;version=0.0.1", acceptProtoFirst} // three bodies
	scrapeAll := func(label string) {
		t.Helper()
		var wg sync.WaitGroup
		for range 8 {
			for _, a := range accepts {
				wg.Go(func() {
					r := scrape(t, h, a, "gzip")
					if r.code != http.StatusOK {
						t.Errorf("status %d", r.code)
					}
					if !strings.Contains(string(r.body), label) {
						t.Errorf("Accept %q: the body is not the snapshot with %q", a, label)
					}
				})
			}
		}
		wg.Wait()
	}
	expect := func(n int64, when string) {
		t.Helper()
		if got := bodies.encodes.Load(); got != n {
			t.Fatalf("%s: %d encodes, want %d", when, got, n)
		}
	}

	poll(&cur, 0, "first")
	expect(0, "before any scrape")
	scrapeAll("first")
	expect(3, "after the first scrapes")
	scrapeAll("first")
	expect(3, "after more scrapes of the same snapshot")

	s2 := poll(&cur, 1, "second")
	bodies.Warm(s2)
	expect(6, "after warming the second snapshot")
	scrapeAll("second")
	expect(6, "after scrapes of the warmed snapshot")

	// Only text is asked for from now on: after WarmFor the other bodies are no longer warmed.
	clock.Advance(11 * time.Minute)
	scrape(t, h, "", "gzip")
	s3 := poll(&cur, 2, "third")
	bodies.Warm(s3)
	expect(7, "after warming the third snapshot, text only")
	scrape(t, h, "", "gzip")
	expect(7, "after a text scrape")
	scrape(t, h, acceptProtoFirst, "gzip")
	expect(8, "after a protobuf scrape, cold")

	// A scrape that loaded the second snapshot before the third was published gets the third's
	// body, without an encode and without evicting it.
	stale := NewHandler(func() *snapshot.Snapshot { return s2 }, nil, HandlerOpts{Bodies: bodies})
	if r := scrape(t, stale, "", "gzip"); !strings.Contains(string(r.body), "third") {
		t.Errorf("stale scrape got:\n%s", r.body)
	}
	scrape(t, h, "", "gzip")
	expect(8, "after a stale scrape")

	// Warm before any scrape of a format encodes nothing.
	fresh := NewBodies(BodiesOpts{})
	fresh.Warm(fixture())
	fresh.Warm(nil)
	if n := fresh.encodes.Load(); n != 0 {
		t.Errorf("warming a cache nobody asked: %d encodes", n)
	}
}

// TestBodyCompressed: the cache keeps gzip and the length of what it decompresses to, in a
// buffer at most 1/16 larger than the body, whether it grew (the first encode) or was sized
// from the last body (every later one).
func TestBodyCompressed(t *testing.T) {
	s := fixture()
	bodies := NewBodies(BodiesOpts{})
	want := encoded(t, s, kindText, DefaultChunkSize)
	for i := range 3 {
		next := *s
		next.Taken = s.Taken.Add(time.Duration(i) * time.Minute)
		b := bodies.get(&next, kindText)
		if b.err != nil {
			t.Fatal(b.err)
		}
		if len(b.gz) >= len(want) || b.size != int64(len(want)) {
			t.Errorf("encode %d: %d bytes gzipped, size %d, text %d bytes", i, len(b.gz), b.size, len(want))
		}
		if cap(b.gz) > len(b.gz)+len(b.gz)/16 {
			t.Errorf("encode %d: the body holds %d bytes for %d", i, cap(b.gz), len(b.gz))
		}
		if got := gunzip(t, b.gz); !bytes.Equal(got, want) {
			t.Errorf("encode %d: the body decompresses to %d bytes, not the %d encoded", i, len(got), len(want))
		}
	}
}

// gunzip decompresses b with the standard library's reader, not the one the exporter uses.
func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}
