package status

import (
	"bytes"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
)

// Options configure the handler; the zero value is usable.
type Options struct {
	// Now is the clock ages are measured from; nil means time.Now. Tests fix it.
	Now func() time.Time
	// Version is shown in the page's footer (e.g. version.Info()); "" shows none.
	Version string
	// Logger receives render failures; nil discards them.
	Logger log.Logger
}

type handler struct {
	src  Source
	opts Options

	mu    sync.Mutex // serialises model builds, so that a new snapshot is derived once
	model atomic.Pointer[model]
	frags fragmentCache
	bufs  sync.Pool
}

// NewHandler returns the handler of /status and /status?format=json. It serves GET and HEAD.
func NewHandler(src Source, opts Options) http.Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Logger == nil {
		opts.Logger = log.NewNopLogger()
	}
	return &handler{src: src, opts: opts, bufs: sync.Pool{New: func() any { return new(bytes.Buffer) }}}
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed; use GET", http.StatusMethodNotAllowed)
		return
	}
	f, format, err := parseQuery(r.URL.RawQuery)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	m, err := h.current()
	if err != nil {
		h.fail(w, format, err)
		return
	}
	p := m.page(f, h.src.Organizations(), h.opts.Now())
	if ws, ok := h.src.(WebhookSource); ok {
		p.Webhooks = webhooksStatus(ws.Webhooks())
	}

	buf := h.bufs.Get().(*bytes.Buffer)
	defer h.putBuffer(buf)
	buf.Reset()
	contentType := "text/html; charset=utf-8"
	if format == "json" {
		contentType = "application/json"
		err = renderJSON(buf, m, p)
	} else {
		err = renderHTML(buf, m, &h.frags, p, h.opts.Version)
	}
	if err != nil {
		// Rendered into a buffer first, so that a failure is a 500, never half a page.
		h.fail(w, format, err)
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", contentType)
	hd.Set("Content-Length", strconv.Itoa(buf.Len()))
	hd.Set("Cache-Control", "no-cache")
	hd.Set("X-Content-Type-Options", "nosniff")
	// No script runs on the page, ever: should an escaping bug let markup through, it stays inert.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

func (h *handler) fail(w http.ResponseWriter, format string, err error) {
	level.Error(h.opts.Logger).Log("msg", "Rendering the status page failed", "format", format, "err", err)
	http.Error(w, "rendering the status page failed; the exporter's log has the error", http.StatusInternalServerError)
}

// putBuffer returns buf to the pool unless one page made it unusually large.
func (h *handler) putBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= 16<<20 {
		h.bufs.Put(buf)
	}
}

// current returns the model of the source's current values, building it when either changed.
// Identity is the pointer: the publishers never modify a published value.
func (h *handler) current() (*model, error) {
	snap, cat := h.src.Snapshot(), h.src.Catalog()
	if m := h.model.Load(); m != nil && m.snap == snap && m.cat == cat {
		return m, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if m := h.model.Load(); m != nil && m.snap == snap && m.cat == cat {
		return m, nil
	}
	m, err := buildModel(snap, cat)
	if err != nil {
		return nil, err
	}
	h.model.Store(m)
	return m, nil
}
