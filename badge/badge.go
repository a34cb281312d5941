// Package badge serves shields-style SVG badges of a component's latest deployment per
// environment, /badges/<component>/<environment>.svg, for READMEs and Backstage pages. Badges are
// rendered from the immutable snapshot the last poll published, never from the Buildkite API, so
// a README viewed by many readers costs no API request.
package badge

import (
	"bytes"
	"encoding/xml"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

// Prefix is the path the handler serves under.
const Prefix = "/badges/"

// MaxPathLength bounds the request path: a component label (namespace/name, each at most 63
// characters in Backstage) and an environment name fit many times over.
const MaxPathLength = 512

// maxVersionRunes bounds the version shown: a version is build meta-data anyone with push
// access can set, and a badge is a single line.
const maxVersionRunes = 32

// Options configure the handler.
type Options struct {
	// MaxAge is the Cache-Control max-age: the poll interval, how long the badge cannot change.
	MaxAge time.Duration
	// Now is the clock for the age shown; time.Now when nil.
	Now func() time.Time
}

// States a badge shows, and their colours (shields.io's palette).
const (
	StatePassed   = "passed"
	StateFailed   = "failed"
	StateCanceled = "canceled"
	StateRunning  = "running"
	StateAwaiting = "awaiting approval"
	StateNone     = "no deployments"
)

var colours = map[string]string{
	StatePassed:   "#4c1",
	StateFailed:   "#e05d44",
	StateRunning:  "#007ec6",
	StateAwaiting: "#dfb317",
	StateCanceled: "#9f9f9f",
	StateNone:     "#9f9f9f",
}

// Badge is what one badge says.
type Badge struct {
	Label   string // the environment
	State   string // one of the State constants
	Version string // empty when unknown
	Since   time.Time
}

// Message is the right-hand text: state, version and age.
func (b Badge) Message(now time.Time) string {
	parts := []string{b.State}
	if b.Version != "" {
		parts = append(parts, b.Version)
	}
	if !b.Since.IsZero() {
		parts = append(parts, Age(now.Sub(b.Since)))
	}
	return strings.Join(parts, " · ")
}

// Age is a duration as a reader says it: "just now", "5m ago", "2h ago", "3d ago".
func Age(d time.Duration) string {
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return strconv.Itoa(int(d/time.Minute)) + "m ago"
	case d < 48*time.Hour:
		return strconv.Itoa(int(d/time.Hour)) + "h ago"
	}
	return strconv.Itoa(int(d/(24*time.Hour))) + "d ago"
}

// FromEnvironment describes an environment's latest deployment: one running or waiting for
// approval first (what happens now), else the latest finished one.
func FromEnvironment(e *snapshot.Environment) Badge {
	b := Badge{Label: e.Name, State: StateNone}
	switch {
	case e.Running > 0:
		b.State, b.Since = StateRunning, e.RunningSince
		return b
	case e.Awaiting > 0:
		b.State, b.Since = StateAwaiting, e.AwaitingSince
		return b
	}
	latest := -1
	for i := range snapshot.States {
		if t := e.LastFinished[i]; !t.IsZero() && (latest < 0 || t.After(e.LastFinished[latest])) {
			latest = i
		}
	}
	if latest < 0 {
		return b
	}
	b.State, b.Since = snapshot.States[latest], e.LastFinished[latest]
	// The version of that build: what is deployed for a pass, the latest build in that state
	// of any pipeline otherwise.
	if b.State == StatePassed && e.Deployed != nil {
		b.Version = e.Deployed.Version
	} else {
		var at time.Time
		for _, d := range e.Deployments {
			if l := d.Last[latest]; l.Number > 0 && !l.FinishedAt.Before(at) {
				at, b.Version = l.FinishedAt, l.Version
			}
		}
	}
	return b
}

// clean makes a label value fit for one line of a badge: valid UTF-8, no control characters,
// bounded. Escaping for XML happens when it is written.
func clean(s string, max int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) {
			return -1
		}
		return r
	}, s)
	if utf8.RuneCountInString(s) > max {
		r := []rune(s)
		s = string(r[:max-1]) + "…"
	}
	return s
}

// textWidth estimates the width in pixels of s in 11px Verdana, as shields.io's flat badges use;
// close enough that text never overflows its box.
func textWidth(s string) int {
	w := 0.0
	for _, r := range s {
		switch {
		case strings.ContainsRune("iIl.,:;'|!() ", r):
			w += 3.9
		case strings.ContainsRune("mwMW@%", r):
			w += 10.7
		case r >= 'A' && r <= 'Z':
			w += 7.6
		case r < 0x80:
			w += 6.6
		default:
			w += 8.5
		}
	}
	return int(w + 0.999)
}

// SVG renders b as an SVG 1.1 document, text escaped.
func SVG(b Badge, now time.Time) []byte {
	label := clean(b.Label, 40)
	b.Version = clean(b.Version, maxVersionRunes)
	msg := clean(b.Message(now), 80)
	colour := colours[b.State]
	if colour == "" {
		colour = colours[StateNone]
	}
	lw, mw := textWidth(label)+10, textWidth(msg)+10
	w := lw + mw
	var buf bytes.Buffer
	esc := func(s string) string {
		var e bytes.Buffer
		xml.EscapeText(&e, []byte(s)) //nolint:errcheck // a bytes.Buffer does not fail
		return e.String()
	}
	fmt.Fprintf(&buf, `<?xml version="1.0" encoding="UTF-8"?>
<svg xmlns="http://www.w3.org/2000/svg" version="1.1" width="%d" height="20">
<title>%s: %s</title>
<linearGradient id="s" x2="0" y2="100%%"><stop offset="0" stop-color="#bbb" stop-opacity=".1"/><stop offset="1" stop-opacity=".1"/></linearGradient>
<clipPath id="r"><rect width="%d" height="20" rx="3" fill="#fff"/></clipPath>
<g clip-path="url(#r)"><rect width="%d" height="20" fill="#555"/><rect x="%d" width="%d" height="20" fill="%s"/><rect width="%d" height="20" fill="url(#s)"/></g>
<g fill="#fff" text-anchor="middle" font-family="Verdana,Geneva,DejaVu Sans,sans-serif" font-size="11">
<text x="%d" y="15" fill="#010101" fill-opacity=".3">%s</text><text x="%d" y="14">%s</text>
<text x="%d" y="15" fill="#010101" fill-opacity=".3">%s</text><text x="%d" y="14">%s</text>
</g>
</svg>
`, w, esc(label), esc(msg), w, lw, lw, mw, colour, w,
		lw/2, esc(label), lw/2, esc(label), lw+mw/2, esc(msg), lw+mw/2, esc(msg))
	return buf.Bytes()
}

// Handler serves Prefix.
type Handler struct {
	snap func() *snapshot.Snapshot
	opts Options
}

// NewHandler serves the badges of the snapshot snap returns at each request.
func NewHandler(snap func() *snapshot.Snapshot, opts Options) *Handler {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	return &Handler{snap: snap, opts: opts}
}

// ParsePath splits /badges/<component>/<environment>.svg; the component may be
// <namespace>/<name>, the environment never holds a slash.
func ParsePath(p string) (component, environment string, ok bool) {
	rest, found := strings.CutPrefix(p, Prefix)
	if !found {
		return "", "", false
	}
	rest, found = strings.CutSuffix(rest, ".svg")
	if !found {
		return "", "", false
	}
	i := strings.LastIndexByte(rest, '/')
	if i <= 0 || i == len(rest)-1 {
		return "", "", false
	}
	return rest[:i], rest[i+1:], true
}

func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "Method not allowed: badges are GET only", http.StatusMethodNotAllowed)
		return
	}
	if len(r.URL.Path) > MaxPathLength || len(r.URL.RawQuery) > MaxPathLength {
		http.Error(w, fmt.Sprintf("Badge path longer than %d bytes", MaxPathLength), http.StatusRequestURITooLong)
		return
	}
	comp, env, ok := ParsePath(r.URL.Path)
	if !ok {
		http.Error(w, "Not found: badges are at /badges/<component>/<environment>.svg (a component outside the default namespace is <namespace>/<name>)", http.StatusNotFound)
		return
	}
	s := h.snap()
	if s == nil {
		http.Error(w, "No deployment data yet: the exporter is starting", http.StatusServiceUnavailable)
		return
	}
	i := sort.Search(len(s.Components), func(i int) bool { return s.Components[i].Label >= comp })
	if i == len(s.Components) || s.Components[i].Label != comp {
		http.Error(w, fmt.Sprintf("Unknown component %q: no catalog component with a Buildkite pipeline has this label (see /status)", comp), http.StatusNotFound)
		return
	}
	c := &s.Components[i]
	var e *snapshot.Environment
	names := make([]string, 0, len(c.Environments))
	for j := range c.Environments {
		names = append(names, c.Environments[j].Name)
		if c.Environments[j].Name == env {
			e = &c.Environments[j]
		}
	}
	if e == nil {
		http.Error(w, fmt.Sprintf("Component %q has no environment %q; it has: %s", comp, env, strings.Join(names, ", ")), http.StatusNotFound)
		return
	}
	body := SVG(FromEnvironment(e), h.opts.Now())
	hd := w.Header()
	hd.Set("Content-Type", "image/svg+xml; charset=utf-8")
	hd.Set("Cache-Control", "max-age="+strconv.Itoa(int(h.opts.MaxAge/time.Second)))
	hd.Set("X-Content-Type-Options", "nosniff")
	// An SVG opened on its own is a document: it must not run or load anything.
	hd.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	w.Write(body) //nolint:errcheck // the client went away
}
