package dashboards

import (
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestExemplarPanels: the duration and lead-time panels ask for exemplars, on the histogram
// queries only and on one query per histogram (each query would draw the same dots again).
func TestExemplarPanels(t *testing.T) {
	want := map[string]bool{"Duration percentiles (1d rolling)": false, "Lead time and recovery time (7d rolling median)": false}
	for name, d := range dashboardFiles(t) {
		for _, p := range panels(d) {
			targets, _ := p["targets"].([]any)
			perMetric := map[string]int{}
			for _, tg := range targets {
				q, _ := tg.(map[string]any)
				if q["exemplar"] != true {
					continue
				}
				expr, _ := q["expr"].(string)
				m := regexp.MustCompile(`buildkite_deployment_\w+_seconds_bucket`).FindString(expr)
				if m == "" {
					t.Errorf("%s: panel %v asks exemplars of %q, which has no deployment histogram", name, p["title"], expr)
				}
				perMetric[m]++
			}
			for m, n := range perMetric {
				if n > 1 {
					t.Errorf("%s: panel %v asks exemplars of %s %d times", name, p["title"], m, n)
				}
			}
			if title, _ := p["title"].(string); len(perMetric) > 0 {
				if _, ok := want[title]; ok {
					want[title] = true
				}
			}
		}
	}
	for title, ok := range want {
		if !ok {
			t.Errorf("panel %q does not show exemplars", title)
		}
	}
}

// TestProvisionedDatasourceLinksBuilds: the shipped datasource turns an exemplar's build label
// into the build's page, once Grafana has unescaped $$ (a literal $ in provisioning files).
func TestProvisionedDatasourceLinksBuilds(t *testing.T) {
	b, err := os.ReadFile("provisioning/datasources/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var prov struct {
		Datasources []struct {
			Type     string `yaml:"type"`
			JSONData struct {
				Destinations []struct {
					Name          string `yaml:"name"`
					URL           string `yaml:"url"`
					DatasourceUID string `yaml:"datasourceUid"`
				} `yaml:"exemplarTraceIdDestinations"`
			} `yaml:"jsonData"`
		} `yaml:"datasources"`
	}
	if err := yaml.Unmarshal(b, &prov); err != nil {
		t.Fatal(err)
	}
	if len(prov.Datasources) != 1 || prov.Datasources[0].Type != "prometheus" {
		t.Fatalf("datasources %+v", prov.Datasources)
	}
	dests := prov.Datasources[0].JSONData.Destinations
	if len(dests) != 1 || dests[0].Name != "build" || dests[0].DatasourceUID != "" {
		t.Fatalf("exemplar destinations %+v, want one external link named build (the exemplar label)", dests)
	}
	url := strings.ReplaceAll(dests[0].URL, "$$", "$") // what Grafana reads
	if url != "https://buildkite.com/${__value.raw}" {
		t.Errorf("exemplar link %q as Grafana reads it", url)
	}
	if got := strings.ReplaceAll(url, "${__value.raw}", "acme/shop-deploy/builds/5"); got != "https://buildkite.com/acme/shop-deploy/builds/5" {
		t.Errorf("a build label links to %s", got)
	}
	if regexp.MustCompile(`\$\{?\w+\}?`).MatchString(strings.ReplaceAll(dests[0].URL, "$$", "")) {
		t.Errorf("%q has a $ Grafana would expand from its environment", dests[0].URL)
	}
}
