package deploy

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-jsonnet"
	"github.com/prometheus/common/model"
	"sigs.k8s.io/yaml"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/alerts"
)

// The mixin's rules are generated from the same template as the rules command (alerts.Render):
// every alerts.Params field that is a plain substitution in the output becomes a _config key.
// The generator renders the rules once with a distinct sentinel value per parameter and turns
// each sentinel in the output back into a %(key)s placeholder. Parameters that the template
// computes with (the SLO window scales the burn-rate factors; the duration threshold becomes
// the le bucket bound) are not substitutions and keep their defaults; mixin/README.md says so.
// TestMixinRules checks both directions: the default _config renders the bundled rule file, and
// another _config renders exactly what alerts.Render makes of the same values.

const mixinDir = "../mixin"

// param is one _config key: how to set it in Params, its sentinel, and how the template prints it.
type param struct {
	key string
	set func(p *alerts.Params, v string)
	// get prints the parameter's value of p as _config holds it (a duration as a Prometheus
	// duration, a number as a number).
	get func(p alerts.Params) any
	// sentinel is set for the placeholder render; it must print as text nothing else contains.
	sentinel string
	// forms are the derived keys and how each prints sentinel: "" the value itself,
	// "Seconds" a duration in seconds, "Quoted" a Go-quoted string, "Number" a ratio as Go's
	// shortest form prints it (Jsonnet's %s would print 0.1 as 0.10000000000000001; %g prints
	// six significant digits, the same for the ratios a threshold uses).
	forms []string
}

func durParam(key, sentinel string, field func(*alerts.Params) *time.Duration) param {
	return param{
		key: key,
		set: func(p *alerts.Params, v string) {
			d, err := model.ParseDuration(v)
			if err != nil {
				panic(err)
			}
			*field(p) = time.Duration(d)
		},
		get:      func(p alerts.Params) any { return promDuration(*field(&p)) },
		sentinel: sentinel,
		forms:    []string{"", "Seconds"},
	}
}

// promDuration prints d as alerts does: days when whole days, else Prometheus' format.
func promDuration(d time.Duration) string {
	const day = 24 * time.Hour
	if d >= day && d%day == 0 {
		return strconv.FormatInt(int64(d/day), 10) + "d"
	}
	return model.Duration(d).String()
}

var mixinParams = []param{
	{
		key: "exporterSelector", sentinel: `sentinelsel="zq"`, forms: []string{""},
		set: func(p *alerts.Params, v string) { p.ExporterSelector = v },
		get: func(p alerts.Params) any { return p.ExporterSelector },
	},
	{
		key: "productionEnvironments", sentinel: "sentinelprodzq", forms: []string{"Quoted", ""},
		set: func(p *alerts.Params, v string) { p.ProductionEnvironments = v },
		get: func(p alerts.Params) any { return p.ProductionEnvironments },
	},
	{
		key: "runbookURL", sentinel: "https://sentinel.invalid/zq/runbook.md", forms: []string{""},
		set: func(p *alerts.Params, v string) { p.RunbookURL = v },
		get: func(p alerts.Params) any { return p.RunbookURL },
	},
	{
		key: "minDeployments", sentinel: "7919", forms: []string{""},
		set: func(p *alerts.Params, v string) { p.MinDeployments, _ = strconv.Atoi(v) },
		get: func(p alerts.Params) any { return p.MinDeployments },
	},
	{
		key: "rateLimitLowRatio", sentinel: "0.0731", forms: []string{"Number"},
		set: func(p *alerts.Params, v string) { p.RateLimitLowRatio, _ = strconv.ParseFloat(v, 64) },
		get: func(p alerts.Params) any { return p.RateLimitLowRatio },
	},
	{
		key: "apiErrorRatio", sentinel: "0.0617", forms: []string{"Number"},
		set: func(p *alerts.Params, v string) { p.APIErrorRatio, _ = strconv.ParseFloat(v, 64) },
		get: func(p alerts.Params) any { return p.APIErrorRatio },
	},
	durParam("failingFor", "3h7m11s", func(p *alerts.Params) *time.Duration { return &p.FailingFor }),
	durParam("slowThreshold", "5h13m17s", func(p *alerts.Params) *time.Duration { return &p.SlowThreshold }),
	durParam("stuckAfter", "7h19m23s", func(p *alerts.Params) *time.Duration { return &p.StuckAfter }),
	durParam("awaitingApprovalAfter", "11h29m31s", func(p *alerts.Params) *time.Duration { return &p.AwaitingApprovalAfter }),
	durParam("pollingStaleAfter", "13h37m41s", func(p *alerts.Params) *time.Duration { return &p.PollingStaleAfter }),
	durParam("stateHold", "17h43m47s", func(p *alerts.Params) *time.Duration { return &p.StateHold }),
	durParam("sloWindowInterval", "19h53m59s", func(p *alerts.Params) *time.Duration { return &p.SLOWindowInterval }),
	durParam("exporterDownFor", "23h1m7s", func(p *alerts.Params) *time.Duration { return &p.ExporterDownFor }),
	durParam("apiErrorsFor", "2h3m5s", func(p *alerts.Params) *time.Duration { return &p.APIErrorsFor }),
	durParam("rateLimitLowFor", "4h9m13s", func(p *alerts.Params) *time.Duration { return &p.RateLimitLowFor }),
	durParam("catalogErrorsFor", "6h17m29s", func(p *alerts.Params) *time.Duration { return &p.CatalogErrorsFor }),
}

// form prints value the way the template prints the derived key.
func form(value, suffix string) string {
	switch suffix {
	case "Seconds":
		d, err := model.ParseDuration(value)
		if err != nil {
			panic(err)
		}
		return strconv.FormatFloat(time.Duration(d).Seconds(), 'f', -1, 64)
	case "Quoted":
		return strconv.Quote(value)
	}
	return value
}

// ruleGroups renders the rules for p and splits them as monitoring mixins do: groups of
// recording rules (prometheusRules) and groups of alerts (prometheusAlerts), in file order.
func ruleGroups(t *testing.T, p alerts.Params) (records, alertGroups []any) {
	t.Helper()
	out, err := alerts.Render(p)
	if err != nil {
		t.Fatal(err)
	}
	var file struct {
		Groups []map[string]any `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(out, &file); err != nil {
		t.Fatal(err)
	}
	alertsStarted := false
	for _, g := range file.Groups {
		rules, _ := g["rules"].([]any)
		isAlerts := len(rules) > 0 && rules[0].(map[string]any)["alert"] != nil
		for _, r := range rules {
			if (r.(map[string]any)["alert"] != nil) != isAlerts {
				t.Fatalf("group %v mixes alerts and recording rules: the mixin cannot split it", g["name"])
			}
		}
		if isAlerts {
			alertsStarted = true
			alertGroups = append(alertGroups, g)
		} else {
			if alertsStarted {
				t.Fatalf("recording group %v after an alert group: prometheusRules + prometheusAlerts would reorder the file", g["name"])
			}
			records = append(records, g)
		}
	}
	return records, alertGroups
}

// jsonnetValue writes v as Jsonnet: strings holding a sentinel become format strings over cfg.
func jsonnetValue(b *bytes.Buffer, v any, indent string, replacer *strings.Replacer, sentinels []string) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		b.WriteString("{\n")
		for _, k := range keys {
			kj, _ := json.Marshal(k)
			fmt.Fprintf(b, "%s  %s: ", indent, kj)
			jsonnetValue(b, v[k], indent+"  ", replacer, sentinels)
			b.WriteString(",\n")
		}
		b.WriteString(indent + "}")
	case []any:
		b.WriteString("[\n")
		for _, e := range v {
			b.WriteString(indent + "  ")
			jsonnetValue(b, e, indent+"  ", replacer, sentinels)
			b.WriteString(",\n")
		}
		b.WriteString(indent + "]")
	case string:
		templated := false
		for _, s := range sentinels {
			if strings.Contains(v, s) {
				templated = true
				break
			}
		}
		if !templated {
			j, _ := json.Marshal(v)
			b.Write(j)
			return
		}
		j, _ := json.Marshal(replacer.Replace(strings.ReplaceAll(v, "%", "%%")))
		fmt.Fprintf(b, "%s %% cfg", j)
	default:
		j, err := json.Marshal(v)
		if err != nil {
			panic(err)
		}
		b.Write(j)
	}
}

const mixinHeader = `// Generated by deploy/mixin_test.go from alerts/rules.yml.tmpl, the template of the rules
// command; do not edit: run  go -C deploy test -run TestMixin -update
`

// generateMixin returns the mixin's generated files: the rules with placeholders, the default
// _config (DefaultParams), the dashboards and their index.
func generateMixin(t *testing.T) map[string][]byte {
	t.Helper()
	sentinel := alerts.DefaultParams()
	var pairs, sentinels []string
	for _, p := range mixinParams {
		p.set(&sentinel, p.sentinel)
		for _, f := range p.forms {
			s := form(p.sentinel, f)
			pairs = append(pairs, s, "%("+p.key+f+")s")
			sentinels = append(sentinels, s)
		}
	}
	replacer := strings.NewReplacer(pairs...) // forms are listed longest-first where they nest
	records, alertGroups := ruleGroups(t, sentinel)
	rendered, err := alerts.Render(sentinel)
	if err != nil {
		t.Fatal(err)
	}
	// A _config key must change something: every parameter is printed in at least one form, and
	// only the forms printed get a derived key.
	used := map[string]bool{}
	for _, p := range mixinParams {
		printed := false
		for _, f := range p.forms {
			if bytes.Contains(rendered, []byte(form(p.sentinel, f))) {
				used[p.key+f], printed = true, true
			}
		}
		if !printed {
			t.Fatalf("the rules template no longer prints %s: drop it from mixinParams", p.key)
		}
	}

	var rules bytes.Buffer
	rules.WriteString(mixinHeader)
	rules.WriteString(`local units = { ms: 0.001, s: 1, m: 60, h: 3600, d: 86400, w: 604800, y: 31536000 };
// seconds parses a Prometheus duration such as 1h30m.
local seconds(d) =
  local step(acc, c) =
    if c >= '0' && c <= '9' then
      if acc.unit != '' then { total: acc.total + std.parseInt(acc.num) * units[acc.unit], num: c, unit: '' }
      else acc { num: acc.num + c }
    else acc { unit: acc.unit + c };
  local r = std.foldl(step, std.stringChars(d), { total: 0, num: '', unit: '' });
  r.total + std.parseInt(r.num) * units[r.unit];
{
  local c = $._config,
  // What the template prints besides the values themselves.
  local cfg = c {
`)
	for _, p := range mixinParams {
		for _, f := range p.forms {
			if !used[p.key+f] {
				continue
			}
			switch f {
			case "Seconds":
				fmt.Fprintf(&rules, "    %sSeconds: std.toString(seconds(c.%s)),\n", p.key, p.key)
			case "Quoted":
				fmt.Fprintf(&rules, "    %sQuoted: std.escapeStringJson(c.%s),\n", p.key, p.key)
			case "Number":
				fmt.Fprintf(&rules, "    %sNumber: '%%g' %% c.%s,\n", p.key, p.key)
			}
		}
	}
	rules.WriteString("  },\n\n  prometheusRules+:: {\n    groups+: ")
	jsonnetValue(&rules, records, "    ", replacer, sentinels)
	rules.WriteString(",\n  },\n\n  prometheusAlerts+:: {\n    groups+: ")
	jsonnetValue(&rules, alertGroups, "    ", replacer, sentinels)
	rules.WriteString(",\n  },\n}\n")

	var config bytes.Buffer
	config.WriteString(mixinHeader)
	config.WriteString("// from alerts.DefaultParams: the defaults of the exporter's --config.file.\n{\n  _config+:: {\n")
	def := alerts.DefaultParams()
	for _, p := range mixinParams {
		v, _ := json.Marshal(p.get(def))
		fmt.Fprintf(&config, "    %s: %s,\n", p.key, v)
	}
	config.WriteString("  },\n}\n")

	files := map[string][]byte{
		mixinDir + "/rules.libsonnet":  rules.Bytes(),
		mixinDir + "/config.libsonnet": config.Bytes(),
	}
	dashboards, err := filepath.Glob("../dashboards/*.json")
	if err != nil {
		t.Fatal(err)
	}
	var index bytes.Buffer
	index.WriteString(mixinHeader)
	index.WriteString("// The dashboards of dashboards/ (generated from Go), copied into mixin/dashboards/.\n{\n  grafanaDashboards+:: {\n")
	for _, d := range dashboards {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		base := filepath.Base(d)
		files[mixinDir+"/dashboards/"+base] = b
		fmt.Fprintf(&index, "    '%s': import 'dashboards/%s',\n", base, base)
	}
	index.WriteString("  },\n}\n")
	files[mixinDir+"/dashboards.libsonnet"] = index.Bytes()
	return files
}

func TestMixinFilesCurrent(t *testing.T) {
	want := generateMixin(t)
	if *update {
		for _, stale := range mixinStale(t, want) {
			if err := os.Remove(stale); err != nil {
				t.Fatal(err)
			}
		}
		writeGenerated(t, want)
		return
	}
	for p, b := range want {
		got, err := os.ReadFile(p)
		if err != nil {
			t.Errorf("%v; run: go -C deploy test -run TestMixin -update", err)
			continue
		}
		if diff := cmp.Diff(string(b), string(got)); diff != "" {
			t.Errorf("%s is stale (-generated +committed); run: go -C deploy test -run TestMixin -update\n%s", p, diff)
		}
	}
	for _, stale := range mixinStale(t, want) {
		t.Errorf("%s is generated by nothing; run: go -C deploy test -run TestMixin -update", stale)
	}
}

func mixinStale(t *testing.T, want map[string][]byte) []string {
	matches, err := filepath.Glob(mixinDir + "/dashboards/*.json")
	if err != nil {
		t.Fatal(err)
	}
	var stale []string
	for _, m := range matches {
		if _, ok := want[m]; !ok {
			stale = append(stale, m)
		}
	}
	return stale
}

// evalMixin evaluates the committed mixin with go-jsonnet, its _config overridden by config
// (Jsonnet object text), and returns {prometheusRules, prometheusAlerts, grafanaDashboards}.
func evalMixin(t *testing.T, config string) map[string]any {
	t.Helper()
	vm := jsonnet.MakeVM()
	vm.Importer(&jsonnet.FileImporter{JPaths: []string{mixinDir}})
	out, err := vm.EvaluateAnonymousSnippet("test.jsonnet", fmt.Sprintf(`
local mixin = (import 'mixin.libsonnet') + { _config+:: %s };
{
  prometheusRules: mixin.prometheusRules,
  prometheusAlerts: mixin.prometheusAlerts,
  grafanaDashboards: mixin.grafanaDashboards,
}`, config))
	if err != nil {
		t.Fatalf("jsonnet: %v", err)
	}
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// rulesFile is what a kube-prometheus build makes of the mixin: its recording groups, then its
// alert groups, as one rule file.
func rulesFile(m map[string]any) map[string]any {
	rules := m["prometheusRules"].(map[string]any)["groups"].([]any)
	alertGroups := m["prometheusAlerts"].(map[string]any)["groups"].([]any)
	return map[string]any{"groups": append(append([]any{}, rules...), alertGroups...)}
}

func yamlFile(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var v map[string]any
	if err := yaml.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMixinRules(t *testing.T) {
	t.Run("default _config renders the bundled rule file", func(t *testing.T) {
		bundled, err := os.ReadFile("../alerts/buildkite-deployments.rules.yml")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(yamlFile(t, bundled), rulesFile(evalMixin(t, "{}"))); diff != "" {
			t.Errorf("mixin with the default _config differs from alerts/buildkite-deployments.rules.yml (-bundled +mixin):\n%s", diff)
		}
	})

	t.Run("another _config renders what the rules template makes of it", func(t *testing.T) {
		values := map[string]string{
			"exporterSelector":       `job="bkde",namespace="monitoring"`,
			"productionEnvironments": "production|prod-.*",
			"runbookURL":             "https://wiki.example.com/buildkite/runbook",
			"minDeployments":         "5",
			"rateLimitLowRatio":      "0.2",
			"apiErrorRatio":          "0.05",
			"failingFor":             "20m",
			"slowThreshold":          "45m",
			"stuckAfter":             "3h",
			"awaitingApprovalAfter":  "2d",
			"pollingStaleAfter":      "1h30m",
			"stateHold":              "2h",
			"sloWindowInterval":      "10m",
			"exporterDownFor":        "7m",
			"apiErrorsFor":           "30m",
			"rateLimitLowFor":        "20m",
			"catalogErrorsFor":       "1h",
		}
		p := alerts.DefaultParams()
		var config bytes.Buffer
		config.WriteString("{\n")
		for _, mp := range mixinParams {
			v, ok := values[mp.key]
			if !ok {
				t.Fatalf("no test value for _config key %s", mp.key)
			}
			mp.set(&p, v)
			j, _ := json.Marshal(mp.get(p))
			fmt.Fprintf(&config, "  %s: %s,\n", mp.key, j)
		}
		config.WriteString("}")
		want, err := alerts.Render(p)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(yamlFile(t, want), rulesFile(evalMixin(t, config.String()))); diff != "" {
			t.Errorf("mixin with _config %s differs from alerts.Render (-Go +mixin):\n%s", config.String(), diff)
		}
	})
}

func TestMixinDashboards(t *testing.T) {
	got := evalMixin(t, "{}")["grafanaDashboards"].(map[string]any)
	dashboards, err := filepath.Glob("../dashboards/*.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(dashboards) {
		t.Errorf("grafanaDashboards has %d dashboards, dashboards/ %d", len(got), len(dashboards))
	}
	for _, d := range dashboards {
		b, err := os.ReadFile(d)
		if err != nil {
			t.Fatal(err)
		}
		var want any
		if err := json.Unmarshal(b, &want); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got[filepath.Base(d)]); diff != "" {
			t.Errorf("grafanaDashboards[%q] differs from %s (-file +mixin):\n%s", filepath.Base(d), d, diff)
		}
	}
}

// TestRenderingsAgree ties the three renderings of the default rules together: the rules
// command, the bundled rule file (which the mixin renders, above) and the chart's copy.
func TestRenderingsAgree(t *testing.T) {
	command := runExporter(t, "rules")
	for _, path := range []string{"../alerts/buildkite-deployments.rules.yml", chartDir + "/files/rules.yml"} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(string(command), string(b)); diff != "" {
			t.Errorf("%s differs from the rules command's output (-command +file):\n%s", path, diff)
		}
	}
}
