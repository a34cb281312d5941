package status

import (
	"bytes"
	_ "embed"
	"html/template"
	"net/url"
	"strconv"
	"time"
)

//go:embed status.html
var pageHTML string

// pageTemplate is parsed once; html/template escapes every value by context. URLs from the API
// are checked by webURL before they reach it (escaping alone leaves javascript: links working).
var pageTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"when":     func(now, t time.Time) string { return string(appendWhen(nil, now, t)) },
	"ts":       func(t time.Time) string { return string(appendTimestamp(nil, t)) },
	"seconds":  func(s float64) string { return string(appendDuration(nil, time.Duration(s*float64(time.Second)))) },
	"budget":   budget,
	"short":    shortCommit,
	"slotWhen": func(t time.Time) template.HTML { return slotMarker(slotWhen, t) },
	"slotAge":  func(t time.Time) template.HTML { return slotMarker(slotAge, t) },
}).Parse(pageHTML))

// htmlData is what the head and tail templates render: the Page, plus what only the HTML needs.
type htmlData struct {
	*Page
	Version string
}

// Now is the time ages are measured from.
func (d htmlData) Now() time.Time { return d.GeneratedAt }

// JSONLink is this page's query with format=json.
func (d htmlData) JSONLink() string {
	q := url.Values{"format": {"json"}}
	if d.Filter.Component != "" {
		q.Set("component", d.Filter.Component)
	}
	if d.Filter.Owner != "" {
		q.Set("owner", d.Filter.Owner)
	}
	if d.Filter.Problems {
		q.Set("problems", "1")
	}
	return "?" + q.Encode()
}

// renderHTML writes the page: head and tail through the template, the components from the
// model's fragments, which only need their times filled in.
func renderHTML(buf *bytes.Buffer, m *model, c *fragmentCache, p *Page, version string) error {
	frags, err := m.fragments(c)
	if err != nil {
		return err
	}
	d := htmlData{Page: p, Version: version}
	if err := pageTemplate.ExecuteTemplate(buf, "head", d); err != nil {
		return err
	}
	for _, c := range p.Components {
		frags[m.index[c]].writeTo(buf, p.GeneratedAt)
	}
	return pageTemplate.ExecuteTemplate(buf, "tail", d)
}

const timeLayout = "2006-01-02 15:04:05 UTC"

func appendTimestamp(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, "never"...)
	}
	return t.UTC().AppendFormat(b, timeLayout)
}

// appendWhen appends t relative to now, then absolute: "3h 5m ago (2026-01-02 15:04:05 UTC)".
func appendWhen(b []byte, now, t time.Time) []byte {
	if t.IsZero() {
		return append(b, "never"...)
	}
	if d := now.Sub(t); d >= 0 {
		b = append(appendDuration(b, d), " ago"...)
	} else {
		b = appendDuration(append(b, "in "...), -d)
	}
	return append(appendTimestamp(append(b, " ("...), t), ')')
}

// appendDuration keeps the two largest units: 45s, 12m 3s, 3h 5m, 4d 2h.
func appendDuration(b []byte, d time.Duration) []byte {
	d = d.Round(time.Second)
	two := func(big, small time.Duration, bu, su byte) []byte {
		b = append(strconv.AppendInt(b, int64(d/big), 10), bu, ' ')
		return append(strconv.AppendInt(b, int64(d%big/small), 10), su)
	}
	switch {
	case d < time.Minute:
		return append(strconv.AppendInt(b, int64(d/time.Second), 10), 's')
	case d < time.Hour:
		return two(time.Minute, time.Second, 'm', 's')
	case d < 24*time.Hour:
		return two(time.Hour, time.Minute, 'h', 'm')
	}
	return two(24*time.Hour, time.Hour, 'd', 'h')
}

func budget(remaining, limit int) string {
	switch {
	case remaining < 0:
		return "unknown"
	case limit < 0:
		return strconv.Itoa(remaining)
	}
	return strconv.Itoa(remaining) + " of " + strconv.Itoa(limit)
}

// shortCommit is the 12-character prefix Buildkite shows.
func shortCommit(c string) string {
	if r := []rune(c); len(r) > 12 {
		return string(r[:12])
	}
	return c
}
