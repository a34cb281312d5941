package buildkite

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// heapPeak runs fn while sampling the live heap every 200 µs and returns the highest heap seen
// above the heap before fn, in bytes, and the process's peak RSS (VmHWM) after fn.
func heapPeak(fn func()) (peak uint64, hwmKiB int) {
	runtime.GC()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	base := sample[0].Value.Uint64()
	var (
		mu   sync.Mutex
		max  = base
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
		t := time.NewTicker(200 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				metrics.Read(s)
				mu.Lock()
				if v := s[0].Value.Uint64(); v > max {
					max = v
				}
				mu.Unlock()
			}
		}
	}()
	fn()
	close(stop)
	<-done
	return max - base, vmHWM()
}

// vmHWM is the process's peak resident set size in KiB, 0 when /proc is not there.
func vmHWM() int {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			return n
		}
	}
	return 0
}

// hostileArray is a JSON array of n copies of item.
func hostileArray(item string, n int) string {
	var b strings.Builder
	b.Grow(n*(len(item)+1) + 2)
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(item)
	}
	b.WriteByte(']')
	return b.String()
}

// bodyTransport answers every request with body, streamed from the string (no copy on the
// server side), with or without an announced length.
type bodyTransport struct {
	body     string
	announce bool
}

func (b bodyTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	length := int64(-1)
	if b.announce {
		length = int64(len(b.body))
	}
	return &http.Response{StatusCode: 200, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(b.body)), ContentLength: length, Request: r}, nil
}

// TestHostilePageMemory lists one small hostile page and reports the heap it took. Before pages
// were streamed, the 8 MiB page of {} took the heap 2.7 GiB up (VmHWM up to 3.6 GB, 2.8 million
// builds visited), the 512k {} 450–540 MiB and the 512k zeros 550 MiB. Run it alone for a
// meaningful VmHWM:
//
//	go test -run TestHostilePageMemory -v ./buildkite/
func TestHostilePageMemory(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's own memory makes the figures meaningless")
	}
	for _, tc := range []struct {
		name string
		body string
	}{
		{"8MiB of {}", hostileArray("{}", 8<<20/3)},
		{"512k tiny items", hostileArray("{}", 512<<10)},
		{"1MiB of 512k zeros", hostileArray("0", 512<<10)},
	} {
		for _, announce := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/content-length=%v", tc.name, announce), func(t *testing.T) {
				c := newTestClient(t, nil, Config{HTTPClient: &http.Client{Transport: bodyTransport{tc.body, announce}}, MaxRetries: -1})
				var got int
				var err error
				peak, hwm := heapPeak(func() {
					err = c.ListOrganizationBuilds(context.Background(), "acme", ListBuildsOptions{}, func(p []Build) error {
						got += len(p)
						return nil
					})
				})
				t.Logf("%s: body %d bytes, %d builds visited, err=%v: peak heap +%.1f MiB, VmHWM %.1f MiB",
					tc.name, len(tc.body), got, err, float64(peak)/(1<<20), float64(hwm)/1024)
				if got > MaxPerPage {
					t.Errorf("%d builds visited from one page, want at most %d", got, MaxPerPage)
				}
				// The body itself (read whole, growing when no length is announced) and the
				// decoder's buffer; nothing that grows with the number of items.
				if limit := uint64(len(tc.body))*3 + 8<<20; peak > limit {
					t.Errorf("peak heap +%d bytes for a %d-byte page, want at most %d", peak, len(tc.body), limit)
				}
			})
		}
	}
}
