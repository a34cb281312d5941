package exposition

import (
	"bytes"
	"io"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// DefaultWarmFor is how long after a scraper last asked for a format Warm keeps encoding it:
// long enough to cover scrape intervals of a few minutes and polls more frequent than scrapes,
// short enough that a scraper that went away stops costing an encode per poll soon.
const DefaultWarmFor = 15 * time.Minute

// BodiesOpts configures NewBodies. The zero value is the defaults.
type BodiesOpts struct {
	// ChunkSize is how many series are rendered into dto values at a time; 0 is
	// DefaultChunkSize.
	ChunkSize int
	// WarmFor is how recently a format must have been asked for to be warmed; 0 is
	// DefaultWarmFor.
	WarmFor time.Duration
	// Now is the clock; nil is time.Now.
	Now func() time.Time
	// ReleaseMemory makes Warm return the encoders' garbage to the operating system once it
	// encoded something (debug.FreeOSMemory): at 10,000 components a poll's encoding allocates
	// hundreds of MB, which would otherwise keep the resident size near twice the live heap
	// until the runtime's scavenger returns it, for a forced collection once per poll.
	ReleaseMemory bool
	// Body is what the flags change in the bodies: native histograms, _created lines.
	Body BodyOptions
}

// Bodies holds, for the current snapshot, the deployment body of each format a scraper asked
// for: encoded on first use (or by Warm), once, gzipped with gzip.BestSpeed, kept compressed only.
// Prometheus always asks for gzip, which then costs a copy per scrape; the plain text of 10,000
// components is over 100 MB, which is why it is never kept. It is safe for concurrent use.
//
// The gzip is github.com/klauspost/compress's, which client_golang (promhttp's zstd) and
// Prometheus build on: at level 1 it compresses these bodies 1.7× faster than compress/gzip, to
// the same size, and compression was a quarter of an encode's CPU. zstd is not offered: a
// second compressed copy of every body would cost memory, for scrapers that all accept gzip.
type Bodies struct {
	chunkSize int
	warmFor   time.Duration
	now       func() time.Time
	release   bool
	opts      BodyOptions

	mu     sync.Mutex
	snap   *snapshot.Snapshot
	bodies [numKinds]*body
	asked  [numKinds]time.Time

	encodes atomic.Int64 // bodies encoded so far, for tests
	// lastGz is the compressed size of each kind's last body: the next one is about as large,
	// so its buffer is allocated once instead of doubling its way there.
	lastGz [numKinds]atomic.Int64
}

// body is one encoded body; once guards gz, size and err.
type body struct {
	once sync.Once
	gz   []byte
	size int64 // uncompressed length
	err  error
}

// NewBodies returns an empty cache.
func NewBodies(opts BodiesOpts) *Bodies {
	b := &Bodies{chunkSize: opts.ChunkSize, warmFor: opts.WarmFor, now: opts.Now, release: opts.ReleaseMemory, opts: opts.Body}
	if b.chunkSize <= 0 {
		b.chunkSize = DefaultChunkSize
	}
	if b.warmFor <= 0 {
		b.warmFor = DefaultWarmFor
	}
	if b.now == nil {
		b.now = time.Now
	}
	return b
}

// Warm makes s the current snapshot and encodes, one after the other, the bodies of the formats
// asked for within WarmFor, so that the first scrape after a poll does not wait for them. The
// poll loop calls it after publishing s. Encoding errors are kept and reported by the scrapes.
func (b *Bodies) Warm(s *snapshot.Snapshot) {
	if s == nil {
		return
	}
	b.mu.Lock()
	s = b.advance(s)
	now := b.now()
	var warm [numKinds]*body
	for k := range numKinds {
		if !b.asked[k].IsZero() && now.Sub(b.asked[k]) < b.warmFor {
			warm[k] = b.entry(k)
		}
	}
	b.mu.Unlock()
	encoded := false
	for k, e := range warm {
		if e != nil {
			b.fill(e, s, kind(k))
			encoded = true
		}
	}
	if encoded && b.release {
		debug.FreeOSMemory()
	}
}

// get returns the body of k for s, encoding it if no one has, and records that k was asked
// for. nil s has no body.
func (b *Bodies) get(s *snapshot.Snapshot, k kind) *body {
	if s == nil {
		return nil
	}
	b.mu.Lock()
	s = b.advance(s)
	b.asked[k] = b.now()
	e := b.entry(k)
	b.mu.Unlock()
	b.fill(e, s, k)
	return e
}

// advance makes s current unless it is older than the current snapshot, and returns the
// snapshot now current. A scrape that loaded the snapshot just before a poll published (and
// warmed) the next one is served the newer body rather than evicting it, which would have
// cost two encodes. The caller holds b.mu.
func (b *Bodies) advance(s *snapshot.Snapshot) *snapshot.Snapshot {
	if b.snap == s {
		return s
	}
	if b.snap != nil && s.Taken.Before(b.snap.Taken) {
		return b.snap
	}
	b.snap = s
	b.bodies = [numKinds]*body{}
	return s
}

// entry returns the current snapshot's body of k, empty until filled. The caller holds b.mu.
func (b *Bodies) entry(k kind) *body {
	if b.bodies[k] == nil {
		b.bodies[k] = &body{}
	}
	return b.bodies[k]
}

// fill encodes e, the body of k for s, unless done; concurrent callers wait for the first.
func (b *Bodies) fill(e *body, s *snapshot.Snapshot, k kind) {
	e.once.Do(func() {
		b.encodes.Add(1)
		var buf bytes.Buffer
		if last := b.lastGz[k].Load(); last > 0 {
			buf.Grow(int(last + last/32 + 256))
		}
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
		cw := &countingWriter{w: zw}
		err := encodeWith(cw, s, k, b.chunkSize, b.opts)
		if cerr := zw.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			e.err = err
			return
		}
		b.lastGz[k].Store(int64(buf.Len()))
		e.gz, e.size = buf.Bytes(), cw.n
		// The body is kept until the next poll: a buffer that grew by doubling (the first
		// encode, or a body larger than the last) is copied to its exact size.
		if slack := cap(e.gz) - len(e.gz); slack > len(e.gz)/16 {
			e.gz = append(make([]byte, 0, len(e.gz)), e.gz...)
		}
	})
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
