package dashboards

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/promql/parser"
	"go.yaml.in/yaml/v3"
)

// The exporter binary's exposition of the fixture organization (kept by TestExposition in main_test.go) and the
// bundled rules. The flags let a developer point the tests at other files.
var (
	fixturePath = flag.String("fixture", "../testdata/exposition.prom", "the exporter binary's /metrics for the fixture organization (kept by the root package's TestExposition)")
	rulesPath   = flag.String("rules", "../alerts/buildkite-deployments.rules.yml", "bundled Prometheus rule file")
)

// promQuery is one PromQL expression of a committed dashboard, with where it came from.
type promQuery struct {
	where string // dashboard / panel / refId, for messages
	expr  string
}

// dashboardFiles reads the committed dashboard JSON, the files users import.
func dashboardFiles(t *testing.T) map[string]map[string]any {
	t.Helper()
	names, err := filepath.Glob("*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(names) == 0 {
		t.Fatal("no dashboards/*.json; run go generate ./dashboards")
	}
	out := map[string]map[string]any{}
	for _, name := range names {
		raw, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		var d map[string]any
		if err := json.Unmarshal(raw, &d); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		out[name] = d
	}
	return out
}

// panels returns every panel of a dashboard, including those nested in rows.
func panels(d map[string]any) []map[string]any {
	var out []map[string]any
	var walk func(list any)
	walk = func(list any) {
		ps, _ := list.([]any)
		for _, p := range ps {
			pm, ok := p.(map[string]any)
			if !ok {
				continue
			}
			out = append(out, pm)
			walk(pm["panels"])
		}
	}
	walk(d["panels"])
	return out
}

// panelQueries are the PromQL expressions of panel targets and annotations.
func panelQueries(t *testing.T) []promQuery {
	t.Helper()
	var out []promQuery
	for name, d := range dashboardFiles(t) {
		for _, p := range panels(d) {
			targets, _ := p["targets"].([]any)
			for _, tg := range targets {
				tm := tg.(map[string]any)
				expr, _ := tm["expr"].(string)
				if expr == "" {
					t.Errorf("%s / %v / %v: target without expr", name, p["title"], tm["refId"])
					continue
				}
				out = append(out, promQuery{where: fmt.Sprintf("%s / %v / %v", name, p["title"], tm["refId"]), expr: expr})
			}
		}
		annotations, _ := d["annotations"].(map[string]any)
		list, _ := annotations["list"].([]any)
		for _, a := range list {
			am := a.(map[string]any)
			if expr, _ := am["expr"].(string); expr != "" {
				out = append(out, promQuery{where: fmt.Sprintf("%s / annotation %v", name, am["name"]), expr: expr})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].where < out[j].where })
	return out
}

// labelValuesRE matches a Grafana query variable's label_values(selector, label).
var labelValuesRE = regexp.MustCompile(`^label_values\((.+),\s*(\w+)\)$`)

// variableQueries are the label_values queries of the query variables: the selector as PromQL and
// the label whose values the variable lists.
func variableQueries(t *testing.T) []struct {
	promQuery
	label string
} {
	t.Helper()
	var out []struct {
		promQuery
		label string
	}
	for name, d := range dashboardFiles(t) {
		tmpl, _ := d["templating"].(map[string]any)
		list, _ := tmpl["list"].([]any)
		for _, v := range list {
			vm := v.(map[string]any)
			if vm["type"] != "query" {
				continue
			}
			q, _ := vm["query"].(string)
			m := labelValuesRE.FindStringSubmatch(q)
			if m == nil {
				t.Errorf("%s: variable %v: query %q is not label_values(<selector>, <label>)", name, vm["name"], q)
				continue
			}
			out = append(out, struct {
				promQuery
				label string
			}{promQuery{where: fmt.Sprintf("%s / variable %v", name, vm["name"]), expr: m[1]}, m[2]})
		}
	}
	return out
}

// grafanaVarRE matches $name, ${name} and ${name:format}.
var grafanaVarRE = regexp.MustCompile(`\$\{(\w+)(?::\w+)?\}|\$(\w+)`)

// substitute replaces Grafana variables by values PromQL accepts. An unknown variable is an error:
// it is a typo Grafana would leave in the query.
func substitute(expr string, values map[string]string) (string, error) {
	var unknown []string
	out := grafanaVarRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVarRE.FindStringSubmatch(m)
		name := sub[1] + sub[2]
		v, ok := values[name]
		if !ok {
			unknown = append(unknown, name)
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown Grafana variable(s) %v", unknown)
	}
	return out, nil
}

// parseValues are placeholders for parsing only.
var parseValues = map[string]string{
	"__range": "1h", "__rate_interval": "1m", "__interval": "1m", "__range_s": "3600",
	"component": "x", "environment": "x", "job": "x",
}

func parse(expr string) (parser.Expr, error) {
	return parser.NewParser(parser.Options{}).ParseExpr(expr)
}

func TestEveryQueryParses(t *testing.T) {
	qs := panelQueries(t)
	if len(qs) < 40 {
		t.Fatalf("found only %d queries; the dashboards were not read", len(qs))
	}
	for _, q := range qs {
		expr, err := substitute(q.expr, parseValues)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		if _, err := parse(expr); err != nil {
			t.Errorf("%s: %q does not parse: %v", q.where, q.expr, err)
		}
	}
	for _, v := range variableQueries(t) {
		expr, err := substitute(v.expr, parseValues)
		if err != nil {
			t.Errorf("%s: %v", v.where, err)
			continue
		}
		if _, err := parse(expr); err != nil {
			t.Errorf("%s: %q does not parse: %v", v.where, v.expr, err)
		}
	}
}

func TestSubstituteRejectsUnknownVariables(t *testing.T) {
	if _, err := substitute(`up{environment=~"$enviroment"}`, parseValues); err == nil {
		t.Fatal("a misspelt variable was accepted")
	}
	got, err := substitute(`x{a=~"${component:regex}"}[$__rate_interval] / $__range_s`, parseValues)
	if err != nil {
		t.Fatal(err)
	}
	if want := `x{a=~"x"}[1m] / 3600`; got != want {
		t.Fatalf("got %q, want %q", got, want)
	}
}

// schema is what a query may name: metric name → its label names.
type schema map[string]map[string]bool

// targetLabels are attached by Prometheus to every scraped series.
var targetLabels = []string{"job", "instance"}

// loadSchema reads the fixture exposition and the rule file. Both must exist: without them the
// dashboards are checked against nothing.
func loadSchema(t *testing.T) schema {
	t.Helper()
	f, err := os.Open(*fixturePath)
	if err != nil {
		t.Fatalf("the exporter's fixture exposition is needed to check the dashboards' metrics (the collector's tests write it): %v", err)
	}
	defer f.Close()
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(f)
	if err != nil {
		t.Fatalf("%s: %v", *fixturePath, err)
	}
	s := schema{"up": set(targetLabels...)}
	add := func(name string, m *dto.Metric, extra ...string) {
		if s[name] == nil {
			s[name] = set(targetLabels...)
		}
		for _, l := range m.GetLabel() {
			s[name][l.GetName()] = true
		}
		for _, l := range extra {
			s[name][l] = true
		}
	}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				add(name+"_bucket", m, "le")
				add(name+"_sum", m)
				add(name+"_count", m)
			case dto.MetricType_SUMMARY:
				add(name, m, "quantile")
				add(name+"_sum", m)
				add(name+"_count", m)
			default:
				add(name, m)
			}
		}
	}

	rules := loadRules(t)
	// Recording rules may read each other; a few passes settle the order.
	for range 5 {
		for _, r := range rules {
			if r.Record == "" {
				continue
			}
			expr, err := parse(r.Expr)
			if err != nil {
				t.Fatalf("%s: rule %s: %v", *rulesPath, r.Record, err)
			}
			ls, _ := s.labelsOf(expr)
			if s[r.Record] == nil {
				s[r.Record] = map[string]bool{}
			}
			for l := range ls {
				s[r.Record][l] = true
			}
			for l := range r.Labels {
				s[r.Record][l] = true
			}
		}
	}
	// ALERTS carries alertname, alertstate and each alert's labels.
	for _, r := range rules {
		if r.Alert == "" {
			continue
		}
		if s["ALERTS"] == nil {
			s["ALERTS"] = set("alertname", "alertstate")
		}
		expr, err := parse(r.Expr)
		if err != nil {
			t.Fatalf("%s: alert %s: %v", *rulesPath, r.Alert, err)
		}
		ls, _ := s.labelsOf(expr)
		for l := range ls {
			s["ALERTS"][l] = true
		}
		for l := range r.Labels {
			s["ALERTS"][l] = true
		}
	}
	return s
}

type rule struct {
	Record, Alert, Expr string
	Labels              map[string]string
}

func loadRules(t *testing.T) []rule {
	t.Helper()
	raw, err := os.ReadFile(*rulesPath)
	if err != nil {
		t.Fatalf("the bundled rule file is needed to check the dashboards' recorded metrics: %v", err)
	}
	var file struct {
		Groups []struct {
			Name  string
			Rules []rule
		}
	}
	if err := yaml.Unmarshal(raw, &file); err != nil {
		t.Fatalf("%s: %v", *rulesPath, err)
	}
	var out []rule
	for _, g := range file.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", *rulesPath)
	}
	return out
}

func set(xs ...string) map[string]bool {
	m := map[string]bool{}
	for _, x := range xs {
		m[x] = true
	}
	return m
}

func keys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// labelsOf infers the label names an expression's result carries, following PromQL's rules for
// aggregations, functions and vector matching, and reports every metric it does not know and
// every label a selector, a by/without clause or an on/ignoring/group clause names that is not
// there.
func (s schema) labelsOf(e parser.Expr) (map[string]bool, []error) {
	var errs []error
	var walk func(e parser.Expr) map[string]bool
	walk = func(e parser.Expr) map[string]bool {
		switch e := e.(type) {
		case *parser.VectorSelector:
			ls, ok := s[e.Name]
			if !ok {
				errs = append(errs, fmt.Errorf("metric %s is neither in the fixture exposition nor recorded by the bundled rules", e.Name))
				return map[string]bool{}
			}
			for _, m := range e.LabelMatchers {
				if m.Name != model.MetricNameLabel && !ls[m.Name] {
					errs = append(errs, fmt.Errorf("%s has no label %q (it has %v)", e.Name, m.Name, keys(ls)))
				}
			}
			return clone(ls)
		case *parser.MatrixSelector:
			return walk(e.VectorSelector)
		case *parser.SubqueryExpr:
			return walk(e.Expr)
		case *parser.ParenExpr:
			return walk(e.Expr)
		case *parser.StepInvariantExpr:
			return walk(e.Expr)
		case *parser.UnaryExpr:
			return walk(e.Expr)
		case *parser.NumberLiteral, *parser.StringLiteral:
			return map[string]bool{}
		case *parser.AggregateExpr:
			in := walk(e.Expr)
			if e.Param != nil {
				walk(e.Param)
			}
			switch {
			case e.Op == parser.TOPK || e.Op == parser.BOTTOMK || e.Op == parser.LIMITK || e.Op == parser.LIMIT_RATIO:
				return in
			case e.Without:
				for _, g := range e.Grouping {
					delete(in, g)
				}
				return in
			}
			out := map[string]bool{}
			for _, g := range e.Grouping {
				if !in[g] {
					errs = append(errs, fmt.Errorf("%s by (%s): the aggregated series have no label %q (they have %v)", e.Op, strings.Join(e.Grouping, ", "), g, keys(in)))
				}
				out[g] = true
			}
			if e.Op == parser.COUNT_VALUES {
				if sl, ok := e.Param.(*parser.StringLiteral); ok {
					out[sl.Val] = true
				}
			}
			return out
		case *parser.Call:
			var args []map[string]bool
			for _, a := range e.Args {
				args = append(args, walk(a))
			}
			switch e.Func.Name {
			case "histogram_quantile":
				in := args[1]
				if !in["le"] {
					errs = append(errs, fmt.Errorf("histogram_quantile over series without le (they have %v)", keys(in)))
				}
				delete(in, "le")
				return in
			case "label_replace", "label_join":
				in := args[0]
				if dst, ok := e.Args[1].(*parser.StringLiteral); ok {
					in[dst.Val] = true
				}
				return in
			case "vector", "time", "scalar", "absent", "absent_over_time":
				return map[string]bool{}
			}
			for i, a := range e.Args {
				if t := a.Type(); t == parser.ValueTypeVector || t == parser.ValueTypeMatrix {
					return args[i]
				}
			}
			return map[string]bool{}
		case *parser.BinaryExpr:
			l, r := walk(e.LHS), walk(e.RHS)
			if e.LHS.Type() == parser.ValueTypeScalar {
				return r
			}
			if e.RHS.Type() == parser.ValueTypeScalar {
				return l
			}
			vm := e.VectorMatching
			if vm != nil && vm.On {
				for _, m := range vm.MatchingLabels {
					if !l[m] || !r[m] {
						errs = append(errs, fmt.Errorf("on (%s): label %q is not on both sides (left %v, right %v)", strings.Join(vm.MatchingLabels, ", "), m, keys(l), keys(r)))
					}
				}
			}
			if vm != nil {
				for _, inc := range vm.Include {
					side := r
					if vm.Card == parser.CardOneToMany {
						side = l
					}
					if !side[inc] {
						errs = append(errs, fmt.Errorf("group_left/right (%s): the one side has no label %q", strings.Join(vm.Include, ", "), inc))
					}
				}
			}
			switch {
			case e.Op == parser.LOR:
				for k := range r {
					l[k] = true
				}
				return l
			case e.Op == parser.LAND || e.Op == parser.LUNLESS:
				return l
			case vm == nil:
				return l
			case vm.Card == parser.CardManyToOne:
				for _, inc := range vm.Include {
					l[inc] = true
				}
				return l
			case vm.Card == parser.CardOneToMany:
				for _, inc := range vm.Include {
					r[inc] = true
				}
				return r
			case vm.On:
				out := map[string]bool{}
				for _, m := range vm.MatchingLabels {
					if l[m] {
						out[m] = true
					}
				}
				return out
			default:
				for _, m := range vm.MatchingLabels {
					delete(l, m)
				}
				return l
			}
		}
		errs = append(errs, fmt.Errorf("unexpected PromQL node %T", e))
		return map[string]bool{}
	}
	return walk(e), errs
}

func clone(m map[string]bool) map[string]bool {
	out := make(map[string]bool, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestEveryQueryUsesExposedMetricsAndLabels(t *testing.T) {
	s := loadSchema(t)
	for _, q := range panelQueries(t) {
		expr, err := substitute(q.expr, parseValues)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		e, err := parse(expr)
		if err != nil {
			t.Errorf("%s: %v", q.where, err)
			continue
		}
		if _, errs := s.labelsOf(e); len(errs) > 0 {
			for _, err := range errs {
				t.Errorf("%s: %v\n\tquery: %s", q.where, err, q.expr)
			}
		}
	}
	for _, v := range variableQueries(t) {
		expr, _ := substitute(v.expr, parseValues)
		e, err := parse(expr)
		if err != nil {
			t.Errorf("%s: %v", v.where, err)
			continue
		}
		ls, errs := s.labelsOf(e)
		for _, err := range errs {
			t.Errorf("%s: %v", v.where, err)
		}
		if !ls[v.label] {
			t.Errorf("%s: lists label %q, which %s does not have (it has %v)", v.where, v.label, v.expr, keys(ls))
		}
	}
}

// TestLabelCheckCatchesMistakes makes sure the check above can fail: each query breaks one rule.
func TestLabelCheckCatchesMistakes(t *testing.T) {
	s := schema{
		"a_total":  set("job", "component", "state"),
		"b_bucket": set("job", "component", "le"),
		"c":        set("job", "component", "environment"),
	}
	bad := map[string]string{
		"unknown metric":        `sum(rate(nope_total[5m]))`,
		"unknown matcher label": `a_total{environment="x"}`,
		"unknown by label":      `sum by (environment) (a_total)`,
		"lost by aggregation":   `sum by (state) (sum by (component) (a_total))`,
		"quantile without le":   `histogram_quantile(0.9, sum by (component) (rate(b_bucket[5m])))`,
		"on label missing":      `a_total / on (environment) c`,
		"group_left missing":    `a_total * on (component) group_left (owner) c`,
		"one-to-one on drops":   `sum by (state) (a_total / on (component) c)`,
	}
	for name, q := range bad {
		e, err := parse(q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, errs := s.labelsOf(e); len(errs) == 0 {
			t.Errorf("%s: %s passed the check", name, q)
		}
	}
	good := `sum by (component, environment) (a_total * on (component) group_left (environment) c) / on (component) group_left () sum by (component) (rate(a_total[5m]))`
	e, err := parse(good)
	if err != nil {
		t.Fatal(err)
	}
	ls, errs := s.labelsOf(e)
	if len(errs) > 0 {
		t.Fatalf("%s: %v", good, errs)
	}
	if got := keys(ls); !slices.Equal(got, []string{"component", "environment"}) {
		t.Fatalf("labels of %s = %v", good, got)
	}
}
