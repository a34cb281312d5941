package status

import (
	"bytes"
	"fmt"
	"html/template"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A fragment is one component's HTML, rendered by html/template once per model rather than per
// request: at 1,000 components the template's escaping is most of a page's cost. Its times
// read relative to the request ("3h 5m ago"), so rendering leaves them as slots, and each request
// writes the static parts with its own times in between.
type fragment struct {
	static []string // len(slots)+1 pieces of HTML
	slots  []slot
}

type slot struct {
	kind byte // slotWhen or slotAge
	t    time.Time
}

const (
	slotWhen = 'w' // "3h 5m ago (2026-01-02 15:04:05 UTC)"
	slotAge  = 'a' // "3h 5m"
)

// slotPrefix starts a slot's marker, an HTML comment the template funcs slotWhen and slotAge
// emit. No value can forge one: html/template escapes "<" in every context the component
// template puts values in (text, attributes, URLs).
const slotPrefix = "<!--status-slot:"

func slotMarker(kind byte, t time.Time) template.HTML {
	if t.IsZero() {
		return "never"
	}
	return template.HTML(slotPrefix + string(kind) + ":" + strconv.FormatInt(t.UnixNano(), 10) + "-->")
}

// splitFragment turns rendered HTML with markers into a fragment.
func splitFragment(html string) (fragment, error) {
	var f fragment
	for {
		i := strings.Index(html, slotPrefix)
		if i < 0 {
			break
		}
		rest := html[i+len(slotPrefix):]
		end := strings.Index(rest, "-->")
		if end < 2 || rest[1] != ':' {
			return f, fmt.Errorf("status: malformed slot marker at %.40q", rest)
		}
		ns, err := strconv.ParseInt(rest[2:end], 10, 64)
		if err != nil {
			return f, fmt.Errorf("status: malformed slot marker at %.40q: %v", rest, err)
		}
		f.static = append(f.static, html[:i])
		f.slots = append(f.slots, slot{kind: rest[0], t: time.Unix(0, ns).UTC()})
		html = rest[end+len("-->"):]
	}
	f.static = append(f.static, html)
	return f, nil
}

// writeTo writes the fragment with its times relative to now.
func (f *fragment) writeTo(buf *bytes.Buffer, now time.Time) {
	for i, s := range f.static {
		buf.WriteString(s)
		if i == len(f.slots) {
			break
		}
		b := buf.AvailableBuffer()
		if f.slots[i].kind == slotAge {
			b = appendDuration(b, now.Sub(f.slots[i].t))
		} else {
			b = appendWhen(b, now, f.slots[i].t)
		}
		buf.Write(b)
	}
}

// fragmentCache keeps the fragments of the last model rendered, by the component's JSON (which
// holds everything the component template reads). A poll cycle changes few components, so the
// first request after it renders only those.
type fragmentCache struct {
	mu    sync.Mutex
	byKey map[string]*fragment
}

// render returns the fragments of m.components, in that order, and keeps them for the next model.
// The cache then holds the current components only, so it is bounded by the catalog.
func (c *fragmentCache) render(m *model) ([]*fragment, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]*fragment, len(m.components))
	next := make(map[string]*fragment, len(m.components))
	var buf bytes.Buffer
	for i, comp := range m.components {
		key := m.raw[i]
		f := c.byKey[key]
		if f == nil {
			buf.Reset()
			if err := pageTemplate.ExecuteTemplate(&buf, "component", comp); err != nil {
				return nil, err
			}
			fr, err := splitFragment(buf.String())
			if err != nil {
				return nil, err
			}
			f = &fr
		}
		out[i], next[key] = f, f
	}
	c.byKey = next
	return out, nil
}
