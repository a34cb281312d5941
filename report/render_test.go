package report

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/store"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/")

// fixtureReport is a fortnight of deployments of three components, the second week reported:
// api deploys several times a day with a failure and its recovery, web once a day with slow
// lead times, a <script> component name checks the escaping, and worker only deployed in the
// previous week.
func fixtureReport(t testing.TB) *Report {
	t.Helper()
	var recs []store.Record
	add := func(comp, env, state string, fin time.Time, dur time.Duration, lead, wait float64) {
		i := len(recs)
		recs = append(recs, store.Record{Key: fmt.Sprint("k", i), Component: comp, Environment: env, Pipeline: "acme/" + comp,
			State: state, BuildID: fmt.Sprint("b", i), BuildNumber: i + 1, FinishedAt: fin, StartedAt: fin.Add(-dur),
			CreatedAt: fin.Add(-dur - time.Minute), LeadTimeSeconds: lead, ApprovalWaitSeconds: wait})
	}
	for d := range 14 {
		day := epoch.Add(time.Duration(d) * 24 * time.Hour)
		for h := range 3 {
			state := "passed"
			if d%5 == 2 && h == 1 {
				state = "failed"
			}
			lead := float64(3600 * (h + 1) * (d%3 + 1))
			if state != "passed" {
				lead = -1
			}
			add("api", "production", state, day.Add(time.Duration(9+3*h)*time.Hour), time.Duration(6+h)*time.Minute, lead, float64(120*(h+1)))
		}
		add("api", "staging", "passed", day.Add(8*time.Hour), 4*time.Minute, 1800, -1)
		if d%2 == 0 {
			add("web", "production", "passed", day.Add(15*time.Hour), 20*time.Minute, float64(86400*(2+d%4)), -1)
		}
		if d == 9 {
			add("web", "production", "canceled", day.Add(16*time.Hour), 0, -1, -1)
		}
		if d < 7 && d%3 == 0 {
			add("worker", "production", "passed", day.Add(11*time.Hour), 3*time.Minute, 7200, -1)
		}
		if d == 11 {
			add(`x<script>alert(1)</script>|y`, "production", "failed", day.Add(12*time.Hour), time.Minute, -1, -1)
		}
	}
	// People and notes (keep_people_and_notes) on the latest deployments of api: plain, and
	// hostile (Markdown and HTML in a name and in the notes).
	for i := len(recs) - 1; i >= 0; i-- {
		r := &recs[i]
		if r.Component != "api" || r.State != "passed" {
			continue
		}
		if r.Environment == "production" && r.DeployedBy == "" {
			r.DeployedBy, r.ReleaseNotes = "Ada Lovelace", "* Faster checkout\n* Fixed the 500 on /cart"
			r.Version, r.WebURL = "v1.4.2", "https://buildkite.com/acme/api/builds/"+fmt.Sprint(r.BuildNumber)
		}
		if r.Environment == "staging" && r.DeployedBy == "" {
			r.DeployedBy, r.ReleaseNotes = "<b>Eve</b> | *bold*", "<script>alert('notes')</script>\n| a | b |"
			r.WebURL = "javascript:alert(1)"
		}
	}
	rep, err := Build(context.Background(), memoryLog(t, recs), Options{
		Since: epoch.Add(7 * 24 * time.Hour), Until: epoch.Add(14 * 24 * time.Hour),
		Catalog: map[string]Entity{
			"api": {Owner: "team-payments", System: "checkout"}, "web": {Owner: "team-web", System: "storefront"},
			"worker": {Owner: "team-payments", System: "checkout"},
		},
		GroupByOwner: true,
		GeneratedAt:  epoch.Add(14*24*time.Hour + 5*time.Minute),
	})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./report -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-want +got; go test ./report -run TestGolden -update rewrites it):\n%s", path, diff)
	}
}

func TestGolden(t *testing.T) {
	rep := fixtureReport(t)
	for _, c := range []struct{ format, file string }{{"html", "report.html"}, {"markdown", "report.md"}, {"json", "report.json"}} {
		t.Run(c.format, func(t *testing.T) {
			var b bytes.Buffer
			if err := rep.Write(&b, c.format); err != nil {
				t.Fatal(err)
			}
			golden(t, c.file, b.Bytes())
		})
	}
}

// TestFixtureFigures checks the fixture's figures by hand, so that the goldens hold what they
// should and not only what they held.
func TestFixtureFigures(t *testing.T) {
	rep := fixtureReport(t)
	rows := map[string]Row{}
	for _, r := range rep.Rows {
		rows[r.Component+" "+r.Environment] = r
	}
	api := rows["api production"].Current
	// Days 7..13: failures on days 7 and 12 (d%5 == 2), at 12:00; the next pass at 15:00.
	if api.Deployments != 21 || api.Failed != 2 || *api.RecoveryP50 != 3*3600 || api.RecoverySamples != 2 {
		t.Errorf("api production: %+v", api)
	}
	if got := *api.ChangeFailureRate; got != 2.0/21 {
		t.Errorf("api change failure rate %v", got)
	}
	if lv := rows["api production"].Levels; lv != (Levels{LevelElite, LevelElite, LevelHigh, LevelHigh}) {
		t.Errorf("api levels %+v", lv)
	}
	if w := rows["worker production"]; w.Current.Deployments != 0 || w.Previous.Deployments != 3 || w.Levels.DeploymentFrequency != LevelLow {
		t.Errorf("worker: %+v", w)
	}
	if len(rep.Groups) != 4 || rep.Groups[0].Owner != "" || rep.Groups[1].Owner != "team-payments" || rep.Groups[1].Components != 2 {
		t.Errorf("groups %+v", rep.Groups)
	}
	if len(rep.Totals) != 2 || rep.Totals[0].Environment != "production" || rep.Totals[0].Components != 4 ||
		rep.Totals[0].Current.Deployments != 21+4+0+1 || rep.Totals[1].Current.Deployments != 7 {
		t.Errorf("totals %+v", rep.Totals)
	}
	var sum int
	for _, b := range rep.Series.Buckets {
		sum += b.Passed + b.Failed + b.Canceled
	}
	var want int
	for _, r := range rep.Rows {
		want += r.Current.Deployments
	}
	if len(rep.Series.Buckets) != 7 || sum != want {
		t.Errorf("%d buckets counting %d deployments, want 7 and %d", len(rep.Series.Buckets), sum, want)
	}
}

// jsonKeys lists the paths of every key of v ("rows[].current.deployments").
func jsonKeys(prefix string, v any, out map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			out[p] = true
			jsonKeys(p, e, out)
		}
	case []any:
		for _, e := range v {
			jsonKeys(prefix+"[]", e, out)
		}
	}
}

// TestJSONSchemaDocumented: every key of the JSON document is in README.md's schema table and
// every key there is in the document, so the documentation cannot drift from the output.
func TestJSONSchemaDocumented(t *testing.T) {
	var b bytes.Buffer
	if err := fixtureReport(t).WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	got := map[string]bool{}
	jsonKeys("", doc, got)
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z0-9_\\[\\]\\.]+)` \\|").FindAllStringSubmatch(string(readme), -1) {
		documented[m[1]] = true
	}
	// Keys and groups share the Keys fields: the README lists them once, under current.
	expand := map[string]bool{}
	for k := range documented {
		expand[k] = true
		if rest, ok := strings.CutPrefix(k, "rows[].current."); ok {
			for _, p := range []string{"rows[].previous.", "groups[].current.", "groups[].previous.", "totals[].current.", "totals[].previous."} {
				expand[p+rest] = true
			}
		}
		if rest, ok := strings.CutPrefix(k, "rows[].dora_levels."); ok {
			expand["groups[].dora_levels."+rest] = true
			expand["totals[].dora_levels."+rest] = true
		}
	}
	var missing, extra []string
	for k := range got {
		if !expand[k] {
			missing = append(missing, k)
		}
	}
	for k := range expand {
		if !got[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	if len(missing) > 0 {
		t.Errorf("keys not documented in README.md: %q", missing)
	}
	if len(extra) > 0 {
		t.Errorf("README.md documents keys the report does not have: %q", extra)
	}
	for _, k := range []string{"schema_version", "rows[].current.deployments", "rows[].current.change_failure_rate", "rows[].current.lead_time_p50_seconds"} {
		if !got[k] {
			t.Errorf("the JSON lacks %s", k)
		}
	}
}

func TestReadJSONRoundTrip(t *testing.T) {
	rep := fixtureReport(t)
	var b bytes.Buffer
	if err := rep.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	back, err := ReadJSON(bytes.NewReader(b.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(rep, back); diff != "" {
		t.Errorf("round trip (-wrote +read):\n%s", diff)
	}
	for _, bad := range []string{`{"schema_version": 2}`, `{"schema_version": 1} {}`, `[]`, ``, `{"schema_version": 1, "rows": 3}`} {
		if _, err := ReadJSON(strings.NewReader(bad)); err == nil {
			t.Errorf("ReadJSON(%q) accepted it", bad)
		}
	}
}

func TestMarkdownEscapes(t *testing.T) {
	var b bytes.Buffer
	if err := fixtureReport(t).WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	if strings.Contains(md, "<script>") || !strings.Contains(md, `x&lt;script&gt;alert(1)&lt;/script&gt;\|y`) {
		t.Errorf("the hostile component name is not escaped:\n%s", md)
	}
	// Every table line has the same number of cells as its header.
	var header int
	for _, l := range strings.Split(md, "\n") {
		if !strings.HasPrefix(l, "|") {
			header = 0
			continue
		}
		n := len(regexp.MustCompile(`(^|[^\\])\|`).FindAllString(l, -1))
		if header == 0 {
			header = n
		} else if n != header {
			t.Errorf("table line with %d cells, header has %d: %s", n, header, l)
		}
	}
}

func TestStackedBars(t *testing.T) {
	svg := stackedBars(`a "title" <x>`, []string{"d1", "d2", "d<3>"}, []barSeries{
		{Name: "passed", Class: "passed", Values: []int{4, 0, 8}},
		{Name: "failed", Class: "failed", Values: []int{2, 0, 0}},
	})
	if strings.Contains(svg, "<x>") || strings.Contains(svg, "d<3>") || !strings.Contains(svg, "&lt;x&gt;") {
		t.Errorf("text not escaped: %s", svg)
	}
	rects := regexp.MustCompile(`<rect class="(\w+)" x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)">`).FindAllStringSubmatch(svg, -1)
	if len(rects) != 3 {
		t.Fatalf("%d bars, want 3 (zero values draw none): %s", len(rects), svg)
	}
	h := func(i int) float64 { var v float64; fmt.Sscan(rects[i][3], &v); return v }
	y := func(i int) float64 { var v float64; fmt.Sscan(rects[i][2], &v); return v }
	// Max 8 → axis 0..8; heights proportional; the failed layer sits on top of the passed one.
	if h(0) != 2*h(1) || h(2) != 2*h(0) || h(2) != plotH {
		t.Errorf("heights %v %v %v, want 2:1 and the largest full height %v", h(0), h(1), h(2), plotH)
	}
	if y(1)+h(1) != y(0) {
		t.Errorf("failed layer at %v+%v, passed at %v: not stacked", y(1), h(1), y(0))
	}
	if err := xmlWellFormed(svg); err != nil {
		t.Error(err)
	}
}

func TestLineChartGaps(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	svg := lineChart("lead", []string{"a", "b", "c", "d"}, []*float64{f(3600), nil, f(7200), f(1800)})
	d := regexp.MustCompile(` d="([^"]+)"`).FindStringSubmatch(svg)
	if d == nil || strings.Count(d[1], "M") != 2 || strings.Count(d[1], "L") != 1 {
		t.Errorf("path %q: want two segments around the gap", d)
	}
	if n := strings.Count(svg, "<circle"); n != 3 {
		t.Errorf("%d points, want 3", n)
	}
	if !strings.Contains(svg, "(hours)") {
		t.Error("no unit in the title")
	}
	if err := xmlWellFormed(svg); err != nil {
		t.Error(err)
	}
	if empty := lineChart("lead", []string{"a"}, []*float64{nil}); strings.Contains(empty, "<path") {
		t.Errorf("a line without values: %s", empty)
	}
}

func TestNiceMax(t *testing.T) {
	for v, want := range map[float64]float64{0: 1, 1: 1, 3: 4, 5: 8, 9: 10, 37: 40, 120: 200, 0.3: 0.4} {
		if got := niceMax(v); got != want || got < v {
			t.Errorf("niceMax(%v) = %v, want %v", v, got, want)
		}
	}
}

func TestChangeStrings(t *testing.T) {
	f := func(v float64) *float64 { return &v }
	got := []string{changeCount(5, 3), changeCount(3, 5), changeCount(2, 2), changeRate(f(0.1), f(0.05)),
		changeRate(f(0.05), f(0.1)), changeDuration(f(3600), f(7200)), changeDuration(nil, f(1)), humanDuration(90000)}
	want := []string{"+2", "−2", "±0", "+5 pp", "−5 pp", "−1h", "", "1d"}
	if !slices.Equal(got, want) {
		t.Errorf("got %q, want %q", got, want)
	}
}

// xmlWellFormed parses s as XML: an SVG the browser would refuse to draw fails here first.
func xmlWellFormed(s string) error {
	d := xml.NewDecoder(strings.NewReader(s))
	for {
		_, err := d.Token()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not well-formed XML: %v", err)
		}
	}
}
