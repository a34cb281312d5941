package dashboards

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCommittedJSONIsGenerated regenerates every dashboard in memory and diffs it against the
// committed file: the JSON users import must be what the Go code says.
func TestCommittedJSONIsGenerated(t *testing.T) {
	files, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range files {
		got, err := os.ReadFile(name)
		if err != nil {
			t.Errorf("%s: %v; run go generate ./dashboards", name, err)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s is out of date; run go generate ./dashboards\n%s", name, cmp.Diff(string(want), string(got)))
		}
	}
	committed, _ := filepath.Glob("*.json")
	for _, name := range committed {
		if _, ok := files[name]; !ok {
			t.Errorf("%s is committed but not generated; delete it or add it to boards", name)
		}
	}
}

func TestGenerateIsDeterministic(t *testing.T) {
	a, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(a, b); diff != "" {
		t.Fatalf("two runs differ:\n%s", diff)
	}
}

func TestUIDsAndTitles(t *testing.T) {
	seen := map[string]string{}
	for name, d := range dashboardFiles(t) {
		uid, _ := d["uid"].(string)
		if uid == "" || len(uid) > 40 {
			t.Errorf("%s: uid %q must be 1 to 40 characters (Grafana rejects longer ones)", name, uid)
		}
		if other, ok := seen[uid]; ok {
			t.Errorf("%s and %s share the uid %q", name, other, uid)
		}
		seen[uid] = name
		if title, _ := d["title"].(string); !strings.HasPrefix(title, "Buildkite / Deployments / ") {
			t.Errorf("%s: title %q does not start with %q", name, title, "Buildkite / Deployments / ")
		}
	}
	for _, uid := range []string{OverviewUID, ComponentUID, SLOUID, HealthUID} {
		if _, ok := seen[uid]; !ok {
			t.Errorf("no committed dashboard has uid %q", uid)
		}
	}
}

func TestTagsVariablesAndLinks(t *testing.T) {
	for name, d := range dashboardFiles(t) {
		var tags []string
		for _, tag := range d["tags"].([]any) {
			tags = append(tags, tag.(string))
		}
		for _, want := range Tags {
			if !slices.Contains(tags, want) {
				t.Errorf("%s: tags %v lack %q", name, tags, want)
			}
		}

		vars := map[string]map[string]any{}
		tmpl, _ := d["templating"].(map[string]any)
		list, _ := tmpl["list"].([]any)
		for _, v := range list {
			vm := v.(map[string]any)
			vars[vm["name"].(string)] = vm
		}
		if ds := vars["datasource"]; ds == nil || ds["type"] != "datasource" || ds["query"] != "prometheus" {
			t.Errorf("%s: no datasource variable of type prometheus: %v", name, ds)
		}
		if c := vars["component"]; c == nil || c["multi"] != true || c["includeAll"] != true {
			t.Errorf("%s: component variable must exist and be multi-value with All: %v", name, c)
		}
		if vars["environment"] == nil {
			t.Errorf("%s: no environment variable", name)
		}

		found := false
		links, _ := d["links"].([]any)
		for _, l := range links {
			lm := l.(map[string]any)
			if lm["type"] != "dashboards" {
				continue
			}
			ltags, _ := lm["tags"].([]any)
			if slices.Contains(ltags, any(Tag)) && lm["asDropdown"] == true && lm["includeVars"] == true && lm["keepTime"] == true {
				found = true
			}
		}
		if !found {
			t.Errorf("%s: no dashboards-link dropdown on tag %q keeping time and variables: %v", name, Tag, links)
		}
	}
}

// walkJSON calls f for every object in a decoded JSON value, with its key path.
func walkJSON(v any, path string, f func(path string, obj map[string]any)) {
	switch v := v.(type) {
	case map[string]any:
		f(path, v)
		for k, c := range v {
			walkJSON(c, path+"."+k, f)
		}
	case []any:
		for _, c := range v {
			walkJSON(c, path+"[]", f)
		}
	}
}

// TestDatasourcesUseTheVariable: a fixed datasource uid would break the import into any Grafana
// whose Prometheus datasource has another uid.
func TestDatasourcesUseTheVariable(t *testing.T) {
	for name, d := range dashboardFiles(t) {
		refs := 0
		walkJSON(d, "", func(path string, obj map[string]any) {
			ds, ok := obj["datasource"]
			if !ok {
				return
			}
			refs++
			dm, _ := ds.(map[string]any)
			if dm["uid"] != "${datasource}" || dm["type"] != "prometheus" {
				t.Errorf("%s %s: datasource %v is not {type: prometheus, uid: ${datasource}}", name, path, ds)
			}
		})
		for _, p := range panels(d) {
			if p["type"] == "row" {
				continue
			}
			if _, ok := p["datasource"]; !ok {
				t.Errorf("%s: panel %v has no datasource", name, p["title"])
			}
			targets, _ := p["targets"].([]any)
			if len(targets) == 0 {
				t.Errorf("%s: panel %v has no query", name, p["title"])
			}
		}
		if refs == 0 {
			t.Errorf("%s: no datasource references at all", name)
		}
	}
}

// TestComponentLinksCarryTheComponent: a link to the component dashboard without var-component
// opens it on "All", not on the component the reader clicked.
func TestComponentLinksCarryTheComponent(t *testing.T) {
	links := 0
	for name, d := range dashboardFiles(t) {
		walkJSON(d, "", func(path string, obj map[string]any) {
			url, _ := obj["url"].(string)
			if !strings.Contains(url, "/d/"+ComponentUID) {
				return
			}
			links++
			if !strings.Contains(url, "var-component=") {
				t.Errorf("%s %s: link %q to the component dashboard has no var-component", name, path, url)
			}
		})
	}
	if links < 2 {
		t.Errorf("found %d links to the component dashboard; the overview and SLO tables should link their rows", links)
	}
}
