package main

import (
	"fmt"
	"io"
	"math"
	"os"
	"strconv"
	"strings"
)

// report prints the figures of in as a Markdown table, in the order they were measured, and
// writes the same table to md when it is not "".
func report(in, md string, w io.Writer) error {
	figs, err := readFigures(in)
	if err != nil {
		return err
	}
	if len(figs) == 0 {
		return fmt.Errorf("report: %s holds no figures; did the stages before it fail?", in)
	}
	table := formatTable(figs)
	if _, err := io.WriteString(w, table); err != nil {
		return err
	}
	if md != "" {
		return os.WriteFile(md, []byte(table), 0o644)
	}
	return nil
}

func formatTable(figs []figure) string {
	var b strings.Builder
	b.WriteString("| section | figure | value | target | met | note |\n|---|---|---:|---|---|---|\n")
	missed := 0
	for _, f := range figs {
		met := ""
		if f.Met != nil {
			met = "yes"
			if !*f.Met {
				met, missed = "**no**", missed+1
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %s | %s |\n", f.Section, f.Name, strings.TrimSpace(formatValue(f.Value)+" "+f.Unit), f.Target, met, strings.ReplaceAll(f.Note, "|", "\\|"))
	}
	fmt.Fprintf(&b, "\n%d figures, %d targets missed.\n", len(figs), missed)
	return b.String()
}

// formatValue writes integers with thousands separators and other values with 3 significant
// digits (at least one decimal).
func formatValue(v float64) string {
	switch {
	case math.IsInf(v, 0) || math.IsNaN(v):
		return strconv.FormatFloat(v, 'f', -1, 64)
	case v == math.Trunc(v) && math.Abs(v) < 1e15:
		return groupThousands(strconv.FormatInt(int64(v), 10))
	case math.Abs(v) >= 100:
		return groupThousands(strconv.FormatFloat(v, 'f', 0, 64))
	case math.Abs(v) >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case math.Abs(v) >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	}
	return strconv.FormatFloat(v, 'g', 3, 64)
}

func groupThousands(s string) string {
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var out []byte
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	if neg {
		return "-" + string(out)
	}
	return string(out)
}
