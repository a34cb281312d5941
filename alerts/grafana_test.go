package alerts

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/grafana/grafana-foundation-sdk/go/alerting"
	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/expr"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"go.yaml.in/yaml/v3"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/fixture"
)

const grafanaGolden = "testdata/grafana-alerts.yml"

// fixtureGrafanaComponents are the components of the fixture organization (the one behind
// testdata/exposition.prom), as the grafana-alerts command reads them from the catalog.
func fixtureGrafanaComponents() []GrafanaComponent {
	var out []GrafanaComponent
	for _, c := range fixture.Components() {
		out = append(out, GrafanaComponent{Label: c.Label, Owner: c.Owner})
	}
	return out
}

func renderFixtureGrafana(t *testing.T) []byte {
	t.Helper()
	b, err := RenderGrafana(DefaultParams(), GrafanaOptions{DatasourceUID: "prometheus"}, fixtureGrafanaComponents())
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decodeGrafanaStrict decodes a provisioning file refusing any field the schema does not have.
func decodeGrafanaStrict(t *testing.T, b []byte) GrafanaFile {
	t.Helper()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	var f GrafanaFile
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("decoding the provisioning file strictly: %v", err)
	}
	return f
}

func TestGrafanaGolden(t *testing.T) {
	got := renderFixtureGrafana(t)
	if *update {
		if err := os.WriteFile(grafanaGolden, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(grafanaGolden)
	if err != nil {
		t.Fatalf("%v (run go test ./alerts -run TestGrafanaGolden -update)", err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("%s differs (-committed +rendered); run go test ./alerts -run TestGrafanaGolden -update:\n%s", grafanaGolden, diff)
	}
}

// TestGrafanaFileShape checks what Grafana's provisioning insists on: apiVersion 1, uids of at
// most 40 [a-z0-9-] characters, stable and unique, titles unique in the folder (Grafana refuses
// a duplicate: "rule title under the same organisation and folder should be unique"), the
// condition naming a query, every Prometheus query on the given data source.
func TestGrafanaFileShape(t *testing.T) {
	f := decodeGrafanaStrict(t, renderFixtureGrafana(t))
	if f.APIVersion != 1 {
		t.Errorf("apiVersion %d", f.APIVersion)
	}
	uids, titles := map[string]bool{}, map[string]bool{}
	rules := 0
	for _, g := range f.Groups {
		if g.Folder != GrafanaFolder || g.OrgID != 1 || strings.Contains(g.Name, "/") {
			t.Errorf("group %q: folder %q, org %d", g.Name, g.Folder, g.OrgID)
		}
		for _, r := range g.Rules {
			rules++
			if len(r.UID) > 40 || strings.Trim(r.UID, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
				t.Errorf("%s: uid %q is not a Grafana uid", r.Title, r.UID)
			}
			if uids[r.UID] || titles[r.Title] {
				t.Errorf("%s: uid %s or title repeated", r.Title, r.UID)
			}
			uids[r.UID], titles[r.Title] = true, true
			if r.UID != GrafanaRuleUID(strings.Fields(r.Title)[0], r.Labels["component"]) {
				t.Errorf("%s: uid %s is not derived from the alert and component", r.Title, r.UID)
			}
			refs := map[string]bool{}
			for _, q := range r.Data {
				refs[q.RefID] = true
				if q.DatasourceUID != expressionDatasource && (q.DatasourceUID != "prometheus" || q.Model.Datasource.UID != "prometheus" || q.RelativeTimeRange == nil || q.RelativeTimeRange.From < 600) {
					t.Errorf("%s: query %s: data source %q/%q, range %+v", r.Title, q.RefID, q.DatasourceUID, q.Model.Datasource.UID, q.RelativeTimeRange)
				}
			}
			if !refs[r.Condition] {
				t.Errorf("%s: condition %q names no query", r.Title, r.Condition)
			}
			if r.Annotations["runbook_url"] == "" || r.Labels["owner"] == "" || r.Labels["severity"] == "" {
				t.Errorf("%s: annotations %v, labels %v", r.Title, r.Annotations, r.Labels)
			}
		}
	}
	if want := len(fixtureGrafanaComponents()) * len(GrafanaAlertNames()); rules != want {
		t.Errorf("%d rules, want %d (one per alert and component)", rules, want)
	}
	// Stable: the same uid for the same alert and component whatever else is in the catalog.
	one, err := Grafana(DefaultParams(), GrafanaOptions{DatasourceUID: "prometheus"}, []GrafanaComponent{{Label: "shop", Owner: "x"}})
	if err != nil {
		t.Fatal(err)
	}
	if u := one.Groups[0].Rules[0].UID; !uids[u] {
		t.Errorf("shop's first rule has uid %s alone, not one of the fixture render's", u)
	}
}

// TestGrafanaRoundTripSDK reads every rule through the grafana-foundation-sdk's published
// alerting types with their strict decoders (unknown or mistyped fields fail), validates them,
// and checks that encoding the SDK values again gives the same JSON. The SDK models the HTTP
// provisioning API's rule (/api/v1/provisioning/alert-rules), which carries orgID, folderUID
// and ruleGroup on the rule where the file carries them on the group; the test moves them
// there. The file's own envelope (apiVersion, groups with orgId, name, folder, interval) has no
// SDK type: decodeGrafanaStrict checks it against GrafanaFile, which mirrors Grafana's
// documented file provisioning schema.
func TestGrafanaRoundTripSDK(t *testing.T) {
	f := decodeGrafanaStrict(t, renderFixtureGrafana(t))
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			raw, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			var m map[string]any
			if err := json.Unmarshal(raw, &m); err != nil {
				t.Fatal(err)
			}
			m["orgID"], m["ruleGroup"], m["folderUID"] = g.OrgID, g.Name, "buildkite-deployments"
			in, _ := json.Marshal(m)

			var sdk alerting.Rule
			if err := sdkErr(sdk.UnmarshalJSONStrict(in)); err != nil {
				t.Errorf("%s: the SDK's strict decoder refuses the rule: %v", r.Title, err)
				continue
			}
			if err := sdk.Validate(); err != nil {
				t.Errorf("%s: the SDK does not validate the rule: %v", r.Title, err)
			}
			for i, q := range r.Data {
				model, _ := json.Marshal(q.Model)
				switch q.DatasourceUID {
				case expressionDatasource:
					var th expr.TypeThreshold
					if err := sdkErr(th.UnmarshalJSONStrict(model)); err != nil {
						t.Errorf("%s: data[%d]: not an SDK threshold expression: %v", r.Title, i, err)
					} else if err := th.Validate(); err != nil || th.Type != "threshold" {
						t.Errorf("%s: data[%d]: threshold %q: %v", r.Title, i, th.Type, err)
					}
				default:
					var pq prometheus.Dataquery
					if err := sdkErr(pq.UnmarshalJSONStrict(model)); err != nil {
						t.Errorf("%s: data[%d]: not an SDK Prometheus query: %v", r.Title, i, err)
					} else if err := pq.Validate(); err != nil || pq.Expr != q.Model.Expr {
						t.Errorf("%s: data[%d]: %v (expr %q)", r.Title, i, err, pq.Expr)
					}
				}
			}
			out, err := json.Marshal(sdk)
			if err != nil {
				t.Fatal(err)
			}
			var back map[string]any
			if err := json.Unmarshal(out, &back); err != nil {
				t.Fatal(err)
			}
			var want map[string]any
			json.Unmarshal(in, &want)
			if diff := cmp.Diff(want, back); diff != "" {
				t.Errorf("%s: the SDK round trip changes the rule (-file +sdk):\n%s", r.Title, diff)
			}
		}
	}
}

// sdkErr is err, or nil for the empty cog.BuildErrors the SDK's strict decoders (v0.0.22)
// return as a non-nil error when all went well.
func sdkErr(err error) error {
	if be, ok := err.(cog.BuildErrors); ok && len(be) == 0 {
		return nil
	}
	return err
}

// pluginSelect is the Backstage Grafana plugin's alert selection with unifiedAlerting (0.21,
// read from its source): the annotation's selectors, separated by commas, are label=value
// pairs; a rule is shown when any pair equals one of the rule's own labels exactly.
func pluginSelect(annotation string, f GrafanaFile) []string {
	var out []string
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			for _, sel := range strings.Split(annotation, ",") {
				k, v, ok := strings.Cut(strings.TrimSpace(sel), "=")
				if ok && r.Labels[strings.TrimSpace(k)] == strings.TrimSpace(v) {
					out = append(out, r.Title)
					break
				}
			}
		}
	}
	return out
}

func titlesOf(components ...string) []string {
	var out []string
	for _, c := range components {
		for _, a := range GrafanaAlertNames() {
			out = append(out, GrafanaRuleTitle(a, c))
		}
	}
	return out
}

// TestGrafanaPluginSelection applies the plugin's selection to the generated rules with the
// annotation the backstage command prints: each component page gets exactly its own rules.
func TestGrafanaPluginSelection(t *testing.T) {
	f := decodeGrafanaStrict(t, renderFixtureGrafana(t))
	for _, c := range fixtureGrafanaComponents() {
		got := pluginSelect("component="+c.Label, f)
		if diff := cmp.Diff(titlesOf(c.Label), got); diff != "" {
			t.Errorf("component=%s selects (-want +got):\n%s", c.Label, diff)
		}
	}
	// A comma is or; a prefix of a name selects nothing (exact match).
	if diff := cmp.Diff(append(titlesOf("api"), titlesOf("shop")...), pluginSelect("component=api, component=shop", f)); diff != "" {
		t.Errorf("component=api, component=shop (-want +got):\n%s", diff)
	}
	if got := pluginSelect("component=sho", f); len(got) != 0 {
		t.Errorf("component=sho selects %v", got)
	}
	// The instances join their rule by alertname = title: Grafana sets alertname to the title.
	for _, title := range pluginSelect("component=api", f) {
		if !strings.HasSuffix(title, " api") {
			t.Errorf("title %q does not name the component", title)
		}
	}
}

func TestGrafanaRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		name  string
		opts  GrafanaOptions
		comps []GrafanaComponent
		want  string
	}{
		{"no data source", GrafanaOptions{}, []GrafanaComponent{{Label: "a"}}, "--grafana.datasource-uid"},
		{"quote in uid", GrafanaOptions{DatasourceUID: `a"b`}, []GrafanaComponent{{Label: "a"}}, "not a Grafana uid"},
		{"comma in label", GrafanaOptions{DatasourceUID: "p"}, []GrafanaComponent{{Label: "a,b"}}, "label selector"},
		{"quote in owner", GrafanaOptions{DatasourceUID: "p"}, []GrafanaComponent{{Label: "a", Owner: `x"}`}}, "owner of a"},
	} {
		_, err := Grafana(DefaultParams(), c.opts, c.comps)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: error %v, want one containing %q", c.name, err, c.want)
		}
	}
}

// TestGrafanaHonoursParams: the thresholds of --config.file reach the Grafana rules as they
// reach the Prometheus rules.
func TestGrafanaHonoursParams(t *testing.T) {
	p := DefaultParams()
	p.StuckAfter, p.FailingFor, p.MinDeployments = 3*3600e9, 20*60e9, 5
	f, err := Grafana(p, GrafanaOptions{DatasourceUID: "p"}, []GrafanaComponent{{Label: "a", Owner: "o"}})
	if err != nil {
		t.Fatal(err)
	}
	all := map[string]GrafanaRule{}
	for _, g := range f.Groups {
		for _, r := range g.Rules {
			all[strings.Fields(r.Title)[0]] = r
		}
	}
	if r := all["BuildkiteDeploymentStuck"]; !strings.HasSuffix(r.Data[0].Model.Expr, "> 10800") {
		t.Errorf("stuck: %s", r.Data[0].Model.Expr)
	}
	if r := all["BuildkiteDeploymentFailing"]; r.For != "20m" {
		t.Errorf("failing for %q", r.For)
	}
	if r := all["BuildkiteDeploymentSuccessBudgetBurn"]; !strings.Contains(r.Data[0].Model.Expr, ">= 5") {
		t.Errorf("burn: %s", r.Data[0].Model.Expr)
	}
	rendered, err := Render(p)
	if err != nil {
		t.Fatal(err)
	}
	if e := (exprs{p}).stuck(""); !bytes.Contains(rendered, []byte(e)) {
		t.Errorf("the Prometheus rules lack the shared stuck expression %q", e)
	}
}
