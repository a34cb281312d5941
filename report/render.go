package report

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
	"time"
)

// Formats are the names WriteFormat accepts.
var Formats = []string{"html", "markdown", "json"}

// Write renders r in format (html, markdown or json).
func (r *Report) Write(w io.Writer, format string) error {
	switch format {
	case "html":
		return r.WriteHTML(w)
	case "markdown":
		return r.WriteMarkdown(w)
	case "json":
		return r.WriteJSON(w)
	}
	return fmt.Errorf("unknown report format %q (want one of %s)", format, strings.Join(Formats, ", "))
}

// WriteJSON writes the documented schema (README.md), indented.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// ReadJSON decodes a report written by WriteJSON, from an exporter's /api/v1/report. A document
// of another schema version is refused rather than half understood.
func ReadJSON(rd io.Reader) (*Report, error) {
	var probe struct {
		SchemaVersion int `json:"schema_version"`
	}
	dec := json.NewDecoder(rd)
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("not a report: %w", err)
	}
	if dec.More() {
		return nil, errors.New("not a report: data after the JSON document")
	}
	if err := json.Unmarshal(raw, &probe); err != nil {
		return nil, fmt.Errorf("not a report: %w", err)
	}
	if probe.SchemaVersion != SchemaVersion {
		return nil, fmt.Errorf("the report has schema_version %d, this version reads %d: use the exporter's own version of the command", probe.SchemaVersion, SchemaVersion)
	}
	var r Report
	if err := json.Unmarshal(raw, &r); err != nil {
		return nil, fmt.Errorf("not a report: %w", err)
	}
	return &r, nil
}

// Formatting for people (Markdown and HTML).

const dash = "—"

func fmtDuration(v *float64) string {
	if v == nil {
		return dash
	}
	return humanDuration(*v)
}

func fmtRate(v *float64) string {
	if v == nil {
		return dash
	}
	return strings.TrimSuffix(fmt.Sprintf("%.1f", *v*100), ".0") + " %"
}

func fmtFreq(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 0.1:
		return fmt.Sprintf("%.3f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func signed(s string, neg bool) string {
	if neg {
		return "−" + s // a minus sign, not a hyphen
	}
	return "+" + s
}

// changeCount is "+3", "−2" or "±0".
func changeCount(cur, prev int) string {
	d := cur - prev
	if d == 0 {
		return "±0"
	}
	return signed(fmt.Sprint(abs(d)), d < 0)
}

func abs(d int) int {
	if d < 0 {
		return -d
	}
	return d
}

// changeDuration is the change of a percentile, or "" when either period has none.
func changeDuration(cur, prev *float64) string {
	if cur == nil || prev == nil {
		return ""
	}
	d := *cur - *prev
	if d == 0 {
		return "±0"
	}
	return signed(humanDuration(math.Abs(d)), d < 0)
}

// changeRate is the change of a ratio in percentage points.
func changeRate(cur, prev *float64) string {
	if cur == nil || prev == nil {
		return ""
	}
	d := (*cur - *prev) * 100
	if math.Abs(d) < 0.05 {
		return "±0 pp"
	}
	return signed(strings.TrimSuffix(fmt.Sprintf("%.1f", math.Abs(d)), ".0")+" pp", d < 0)
}

func withChange(v, change string) string {
	if change == "" {
		return v
	}
	return v + " (" + change + ")"
}

func levelName(l Level) string {
	if l == LevelNone || l == "" {
		return dash
	}
	return strings.ToUpper(string(l[:1])) + string(l[1:])
}

// line is the figures of a row or group as strings, for both human formats.
type line struct {
	Component, Environment, Owner, System string
	Components                            int
	Deployments, Frequency, FailureRate   string
	LeadTime, Recovery, Approval, Durat   string
	Levels                                Levels
}

func lineOf(cur, prev Keys) line {
	return line{
		Deployments: withChange(fmt.Sprint(cur.Deployments), changeCount(cur.Deployments, prev.Deployments)),
		Frequency:   fmtFreq(cur.FrequencyPerDay),
		FailureRate: withChange(fmtRate(cur.ChangeFailureRate), changeRate(cur.ChangeFailureRate, prev.ChangeFailureRate)),
		LeadTime:    withChange(fmtDuration(cur.LeadTimeP50)+" / "+fmtDuration(cur.LeadTimeP90), changeDuration(cur.LeadTimeP50, prev.LeadTimeP50)),
		Recovery:    withChange(fmtDuration(cur.RecoveryP50), changeDuration(cur.RecoveryP50, prev.RecoveryP50)),
		Approval:    fmtDuration(cur.ApprovalWaitP50),
		Durat:       fmtDuration(cur.DurationP50) + " / " + fmtDuration(cur.DurationP90),
	}
}

func (r *Report) totalLines() []line {
	var out []line
	for _, t := range r.Totals {
		l := lineOf(t.Current, t.Previous)
		l.Environment, l.Components, l.Levels = t.Environment, t.Components, t.Levels
		out = append(out, l)
	}
	return out
}

func (r *Report) lines() (rows, groups []line, owners bool) {
	for _, row := range r.Rows {
		l := lineOf(row.Current, row.Previous)
		l.Component, l.Environment, l.Owner, l.System, l.Levels = row.Component, row.Environment, row.Owner, row.System, row.Levels
		owners = owners || row.Owner != "" || row.System != ""
		rows = append(rows, l)
	}
	for _, g := range r.Groups {
		l := lineOf(g.Current, g.Previous)
		l.Owner, l.Environment, l.Components, l.Levels = g.Owner, g.Environment, g.Components, g.Levels
		if l.Owner == "" {
			l.Owner = "(no owner)"
		}
		groups = append(groups, l)
	}
	return rows, groups, owners
}

func (r *Report) days() string {
	d := r.Until.Sub(r.Since).Hours() / 24
	if d == math.Trunc(d) {
		if d == 1 {
			return "1 day"
		}
		return fmt.Sprintf("%.0f days", d)
	}
	return fmt.Sprintf("%.1f days", d)
}

func (r *Report) filterText() string {
	var parts []string
	if r.Filter.Component != "" {
		parts = append(parts, "component "+r.Filter.Component)
	}
	if r.Filter.Environment != "" {
		parts = append(parts, "environment "+r.Filter.Environment)
	}
	return strings.Join(parts, ", ")
}

// methodText is the note every human report ends with.
func (r *Report) methodText() []string {
	return []string{
		"Deployments: finished deployments (passed, failed, canceled), as buildkite_deployments_total counts them; per day and change failure rate count passed and failed only (failed / (passed + failed)). " +
			"Each figure is shown with its change against the previous period of the same length.",
		"Percentiles are exact, taken over the values of the period's deployments (nearest rank: the smallest value at least that share of them do not exceed). " +
			"Grafana's histogram_quantile estimates them from the exporter's histogram buckets, so its figures differ.",
		"Lead time: first build of the commit → passed deployment. Recovery: failed deployment → the next passed one, counted when it passes. Approval wait: block step reached → unblocked. Duration: started → finished, passed and failed.",
		"DORA levels: " + r.LevelsSource,
	}
}

func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ", "`", "\\`", "*", `\*`, "_", `\_`, "<", "&lt;", ">", "&gt;").Replace(s)
}

// latestRows are the rows with a latest deployment, in row order.
func (r *Report) latestRows() []Row {
	var out []Row
	for _, row := range r.Rows {
		if row.Latest != nil {
			out = append(out, row)
		}
	}
	return out
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// WriteMarkdown writes a report to paste into a chat or a weekly review.
func (r *Report) WriteMarkdown(w io.Writer) error {
	bw := bufio.NewWriter(w)
	p := func(format string, a ...any) { fmt.Fprintf(bw, format, a...) }
	p("# Deployment report: %s to %s\n\n", r.Since.Format("2006-01-02 15:04"), r.Until.Format("2006-01-02 15:04 MST"))
	p("%s, compared with the %s before (from %s).", strings.ToUpper(r.days()[:1])+r.days()[1:], r.days(), r.PreviousSince.Format(time.RFC3339))
	if f := r.filterText(); f != "" {
		p(" Only %s.", mdEscape(f))
	}
	p("\n\n")
	for _, n := range r.Notes {
		p("> **Note:** %s\n\n", mdEscape(n))
	}
	rows, groups, owners := r.lines()
	if totals := r.totalLines(); len(totals) > 0 {
		// A list, not a table: it reads the same in a chat that renders no tables.
		p("## Summary\n\n")
		for i, l := range totals {
			t := r.Totals[i]
			p("- **%s**: %s deployments of %d component(s), %s per day, change failure rate %s, lead time p50 %s, recovery p50 %s. DORA levels: frequency %s, lead time %s, failures %s, recovery %s.\n",
				mdEscape(l.Environment), l.Deployments, l.Components, l.Frequency, l.FailureRate,
				withChange(fmtDuration(t.Current.LeadTimeP50), changeDuration(t.Current.LeadTimeP50, t.Previous.LeadTimeP50)), l.Recovery,
				levelName(l.Levels.DeploymentFrequency), levelName(l.Levels.LeadTime), levelName(l.Levels.ChangeFailureRate), levelName(l.Levels.RecoveryTime))
		}
		p("\n")
	}
	levels := func(l Levels) string {
		return levelName(l.DeploymentFrequency) + " / " + levelName(l.LeadTime) + " / " + levelName(l.ChangeFailureRate) + " / " + levelName(l.RecoveryTime)
	}
	const cols = "Deployments | Per day | Change failure rate | Lead time p50 / p90 | Recovery p50 | Approval wait p50 | Duration p50 / p90 | DORA: frequency / lead time / failures / recovery |"
	const sep = "---:|---:|---:|---:|---:|---:|---:|---|"
	if len(groups) > 0 {
		p("## By owner\n\n| Owner | Environment | Components | %s\n|---|---|---:|%s\n", cols, sep)
		for _, g := range groups {
			p("| %s | %s | %d | %s | %s | %s | %s | %s | %s | %s | %s |\n", mdEscape(g.Owner), mdEscape(g.Environment), g.Components,
				g.Deployments, g.Frequency, g.FailureRate, g.LeadTime, g.Recovery, g.Approval, g.Durat, levels(g.Levels))
		}
		p("\n## By component\n\n")
	}
	if len(rows) == 0 {
		p("No deployment finished in this period or the previous one.\n\n")
	} else {
		if owners {
			p("| Component | Environment | Owner | System | %s\n|---|---|---|---|%s\n", cols, sep)
		} else {
			p("| Component | Environment | %s\n|---|---|%s\n", cols, sep)
		}
		for _, l := range rows {
			if owners {
				p("| %s | %s | %s | %s ", mdEscape(l.Component), mdEscape(l.Environment), mdEscape(l.Owner), mdEscape(l.System))
			} else {
				p("| %s | %s ", mdEscape(l.Component), mdEscape(l.Environment))
			}
			p("| %s | %s | %s | %s | %s | %s | %s | %s |\n", l.Deployments, l.Frequency, l.FailureRate, l.LeadTime, l.Recovery, l.Approval, l.Durat, levels(l.Levels))
		}
		p("\n")
	}
	if latest := r.latestRows(); len(latest) > 0 {
		p("## Latest deployments\n\n")
		for _, row := range latest {
			l := row.Latest
			p("- **%s** in **%s**: %s, %s #%d, %s", mdEscape(row.Component), mdEscape(row.Environment),
				mdEscape(cmpOr(l.Version, "no version")), mdEscape(l.Pipeline), l.BuildNumber, l.FinishedAt.Format(time.RFC3339))
			if l.DeployedBy != "" {
				p(", by %s", mdEscape(l.DeployedBy))
			}
			p(".\n")
			if l.ReleaseNotes != "" {
				// Quoted line by line: the notes keep their lines, not their Markdown.
				for _, ln := range strings.Split(l.ReleaseNotes, "\n") {
					p("  > %s\n", mdEscape(ln))
				}
			}
		}
		p("\n")
	}
	for _, m := range r.methodText() {
		p("_%s_\n\n", mdEscape(m))
	}
	p("_Generated %s by buildkite_deployments_exporter from %d records._\n", r.GeneratedAt.Format(time.RFC3339), r.RecordsRead)
	return bw.Flush()
}

//go:embed report.html
var pageTemplate string

var pageTmpl = template.Must(template.New("report").Funcs(template.FuncMap{"level": levelName}).Parse(pageTemplate))

// chartLabel is a bucket's label on the x axis.
func (r *Report) chartLabels() []string {
	out := make([]string, len(r.Series.Buckets))
	for i, b := range r.Series.Buckets {
		out[i] = b.Start.Format("Jan 2")
	}
	return out
}

// WriteHTML writes one self-contained page (inline style and SVG, no script, no outside
// resource) that reads on screen and prints.
func (r *Report) WriteHTML(w io.Writer) error {
	labels := r.chartLabels()
	passed, failed, canceled := make([]int, len(labels)), make([]int, len(labels)), make([]int, len(labels))
	lead := make([]*float64, len(labels))
	for i, b := range r.Series.Buckets {
		passed[i], failed[i], canceled[i], lead[i] = b.Passed, b.Failed, b.Canceled, b.LeadTimeP50
	}
	step := "day"
	if d := r.Series.BucketSeconds / 86400; d > 1 {
		step = fmt.Sprintf("%d days", d)
	}
	rows, groups, owners := r.lines()
	data := map[string]any{
		"R":      r,
		"Title":  fmt.Sprintf("Deployment report: %s to %s", r.Since.Format("2006-01-02"), r.Until.Format("2006-01-02")),
		"Days":   r.days(),
		"Filter": r.filterText(),
		"Step":   step,
		// Both charts are written by svg.go, which escapes every text it places.
		"Deployments": template.HTML(stackedBars("Deployments per "+step+" by state", labels, []barSeries{
			{Name: "passed", Class: "passed", Values: passed},
			{Name: "failed", Class: "failed", Values: failed},
			{Name: "canceled", Class: "canceled", Values: canceled},
		})),
		"LeadTime": template.HTML(lineChart("Lead time p50 per "+step, labels, lead)),
		"Rows":     rows,
		"Latest":   r.latestRows(),
		"Groups":   groups,
		"Totals":   r.totalLines(),
		"Owners":   owners,
		"Method":   r.methodText(),
		"Since":    r.Since.Format(time.RFC3339),
		"Until":    r.Until.Format(time.RFC3339),
		"Previous": r.PreviousSince.Format(time.RFC3339),
		"Made":     r.GeneratedAt.Format(time.RFC3339),
	}
	bw := bufio.NewWriter(w)
	if err := pageTmpl.Execute(bw, data); err != nil {
		return err
	}
	return bw.Flush()
}
