// Package webguard makes the exporter fail closed on its --web.config.file. exporter-toolkit
// reads the file again for every request, so a file emptied while the exporter runs (a
// truncated ConfigMap, an editor's save) would serve /metrics without the basic auth it
// configured. The guard checks the file when it changes and, while it is empty or invalid,
// answers 503 instead of serving.
package webguard

import (
	"bytes"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
)

// Check reports whether the web config file at path may be served with: it exists, is not
// empty, and exporter-toolkit accepts it.
func Check(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return errors.New("the file is empty; an empty web configuration would serve without TLS or authentication. Remove --web.config.file to serve without them, or restore the file")
	}
	if err := web.Validate(path); err != nil {
		return err
	}
	return nil
}

// Guard wraps handlers with the check of one web config file.
type Guard struct {
	path string

	mu      sync.Mutex
	modTime time.Time
	size    int64
	err     error
}

// New returns a guard of path; "" (no web config) guards nothing.
func New(path string) *Guard { return &Guard{path: path, size: -1} }

// Err is the file's state now: nil when it may be served with. It re-checks the file only when
// its size or modification time changed.
func (g *Guard) Err() error {
	if g.path == "" {
		return nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	fi, err := os.Stat(g.path)
	if err != nil {
		g.size, g.err = -1, err
		return err
	}
	if fi.Size() != g.size || !fi.ModTime().Equal(g.modTime) {
		g.size, g.modTime, g.err = fi.Size(), fi.ModTime(), Check(g.path)
	}
	return g.err
}

// Handler answers 503 while the file may not be served with.
func (g *Guard) Handler(next http.Handler) http.Handler {
	if g.path == "" {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := g.Err(); err != nil {
			http.Error(w, fmt.Sprintf("Refusing to serve: the web configuration file %s is unusable (%v); fix it, the exporter picks it up at once.", g.path, err), http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(w, r)
	})
}
