package report

import (
	"fmt"
	"html"
	"math"
	"strings"
)

// A small SVG writer for the report's two charts. The Go charting libraries compared (gonum's
// plot and go-analyze/charts, see README.md) each bring font packages and a rasteriser to
// measure text, and write fixed colours and fonts inline, which a print stylesheet cannot
// change; these charts need bars, a line and axis labels, in classes the page styles.

const (
	chartW, chartH          = 720.0, 220.0
	padL, padR, padT, padB  = 52.0, 12.0, 18.0, 30.0
	plotW, plotH            = chartW - padL - padR, chartH - padT - padB
	maxXLabels              = 12
	yTicks                  = 4
	pointRadius, lineStroke = 3.0, 2.0
)

// barSeries is one stacked layer: class styles it (passed, failed, canceled).
type barSeries struct {
	Name, Class string
	Values      []int
}

// niceMax rounds v up to 1, 2 or 5 times a power of ten, so that yTicks ticks are round.
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	step := v / yTicks
	p := math.Pow(10, math.Floor(math.Log10(step)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= step {
			return m * p * yTicks
		}
	}
	return 10 * p * yTicks
}

func fmtNum(v float64) string {
	if v == math.Trunc(v) {
		return fmt.Sprintf("%.0f", v)
	}
	return strings.TrimRight(strings.TrimRight(fmt.Sprintf("%.2f", v), "0"), ".")
}

// frame writes the opening tag, the y grid with its labels and the x labels.
func frame(sb *strings.Builder, title string, labels []string, ymax float64, yLabel func(float64) string) {
	fmt.Fprintf(sb, `<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 %.0f %.0f" role="img" aria-label="%s">`, chartW, chartH, html.EscapeString(title))
	fmt.Fprintf(sb, `<title>%s</title>`, html.EscapeString(title))
	for i := 0; i <= yTicks; i++ {
		v := ymax * float64(i) / yTicks
		y := padT + plotH - plotH*float64(i)/yTicks
		fmt.Fprintf(sb, `<line class="grid" x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>`, padL, y, padL+plotW, y)
		fmt.Fprintf(sb, `<text class="axis" x="%.1f" y="%.1f" text-anchor="end">%s</text>`, padL-6, y+4, html.EscapeString(yLabel(v)))
	}
	n := len(labels)
	every := max(1, (n+maxXLabels-1)/maxXLabels)
	for i := 0; i < n; i += every {
		x := padL + plotW*(float64(i)+0.5)/float64(n)
		fmt.Fprintf(sb, `<text class="axis" x="%.1f" y="%.1f" text-anchor="middle">%s</text>`, x, chartH-10, html.EscapeString(labels[i]))
	}
}

// stackedBars draws one bar per label, its layers stacked in the order of series.
func stackedBars(title string, labels []string, series []barSeries) string {
	var sb strings.Builder
	top := 0
	for i := range labels {
		sum := 0
		for _, s := range series {
			sum += s.Values[i]
		}
		top = max(top, sum)
	}
	ymax := niceMax(float64(max(top, yTicks))) // counts: whole-number ticks
	frame(&sb, title, labels, ymax, fmtNum)
	n := float64(len(labels))
	slot := plotW / max(n, 1)
	barW := math.Max(1, slot*0.7)
	for i, label := range labels {
		base := 0.0
		x := padL + slot*float64(i) + (slot-barW)/2
		for _, s := range series {
			v := float64(s.Values[i])
			if v == 0 {
				continue
			}
			h := plotH * v / ymax
			y := padT + plotH - plotH*base/ymax - h
			fmt.Fprintf(&sb, `<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s: %d %s</title></rect>`,
				html.EscapeString(s.Class), x, y, barW, h, html.EscapeString(label), s.Values[i], html.EscapeString(s.Name))
			base += v
		}
	}
	sb.WriteString(`<line class="axisline" x1="` + fmtNum(padL) + `" y1="` + fmtNum(padT+plotH) + `" x2="` + fmtNum(padL+plotW) + `" y2="` + fmtNum(padT+plotH) + `"/>`)
	sb.WriteString(`</svg>`)
	return sb.String()
}

// durationUnit picks the unit the largest value reads best in.
func durationUnit(maxSeconds float64) (name string, seconds float64) {
	switch {
	case maxSeconds < 2*hour:
		return "minutes", 60
	case maxSeconds < 3*day:
		return "hours", hour
	}
	return "days", day
}

// lineChart draws values (nil: no value, a gap in the line) as a line with points.
func lineChart(title string, labels []string, values []*float64) string {
	var sb strings.Builder
	top := 0.0
	for _, v := range values {
		if v != nil {
			top = math.Max(top, *v)
		}
	}
	unit, per := durationUnit(top)
	ymax := niceMax(top / per)
	frame(&sb, title+" ("+unit+")", labels, ymax, fmtNum)
	fmt.Fprintf(&sb, `<text class="axis unit" x="%.1f" y="%.1f">%s</text>`, padL+4, padT-3, unit)
	n := float64(len(labels))
	var path strings.Builder
	var points strings.Builder
	open := false
	for i, v := range values {
		if v == nil {
			open = false
			continue
		}
		x := padL + plotW*(float64(i)+0.5)/max(n, 1)
		y := padT + plotH - plotH*(*v/per)/ymax
		if open {
			fmt.Fprintf(&path, " L%.1f %.1f", x, y)
		} else {
			fmt.Fprintf(&path, " M%.1f %.1f", x, y)
			open = true
		}
		fmt.Fprintf(&points, `<circle class="point" cx="%.1f" cy="%.1f" r="%.0f"><title>%s: %s</title></circle>`,
			x, y, pointRadius, html.EscapeString(labels[i]), html.EscapeString(humanDuration(*v)))
	}
	if path.Len() > 0 {
		fmt.Fprintf(&sb, `<path class="line" stroke-width="%.0f" d="%s"/>`, lineStroke, strings.TrimSpace(path.String()))
	}
	sb.WriteString(points.String())
	sb.WriteString(`<line class="axisline" x1="` + fmtNum(padL) + `" y1="` + fmtNum(padT+plotH) + `" x2="` + fmtNum(padL+plotW) + `" y2="` + fmtNum(padT+plotH) + `"/>`)
	sb.WriteString(`</svg>`)
	return sb.String()
}

// humanDuration writes seconds as a person reads them: 45s, 12m, 3.5h, 2.1d.
func humanDuration(s float64) string {
	switch {
	case s < 60:
		return fmt.Sprintf("%.0fs", s)
	case s < hour:
		return fmt.Sprintf("%.0fm", s/60)
	case s < day:
		return strings.TrimSuffix(fmt.Sprintf("%.1f", s/hour), ".0") + "h"
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", s/day), ".0") + "d"
}
