package dashboards

import (
	"bytes"
	"errors"
	"io"
	"net/url"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.yaml.in/yaml/v3"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
)

func TestBackstageAnnotations(t *testing.T) {
	components := []backstage.Component{
		{Name: "web", Namespace: "team-b", Label: "team-b/web", Ref: "component:team-b/web", Source: "catalog/web.yaml",
			Pipelines: []backstage.PipelineRef{{Org: "acme", Pipeline: "web-deploy"}, {Org: "acme", Pipeline: "web-deploy-prod"}}},
		{Name: "payments-api", Namespace: "default", Label: "payments-api", Ref: "component:default/payments-api", Source: "catalog/payments.yaml",
			Pipelines: []backstage.PipelineRef{{Org: "acme", Pipeline: "payments-deploy"}}},
	}
	var buf bytes.Buffer
	if err := BackstageAnnotations(&buf, components, "https://grafana.example.com/"); err != nil {
		t.Fatal(err)
	}

	dec := yaml.NewDecoder(&buf)
	var got []entityPatch
	for {
		var p entityPatch
		err := dec.Decode(&p)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("output is not YAML: %v\n%s", err, buf.String())
		}
		got = append(got, p)
	}
	if len(got) != 2 {
		t.Fatalf("got %d documents, want 2", len(got))
	}

	// Sorted by ref: default/payments-api first.
	want := map[string]string{
		"buildkite.com/pipeline-slug":  "acme/payments-deploy",
		"grafana/dashboard-selector":   "buildkite-deployments",
		"grafana/overview-dashboard":   "https://grafana.example.com/d/bk-deploy-component/buildkite-deployments-component?var-component=payments-api&kiosk",
		"grafana/alert-label-selector": "component=payments-api",
	}
	if diff := cmp.Diff(want, got[0].Metadata.Annotations); diff != "" {
		t.Errorf("payments-api annotations (-want +got):\n%s", diff)
	}
	if got[1].Metadata.Annotations["buildkite.com/pipeline-slug"] != "acme/web-deploy,acme/web-deploy-prod" {
		t.Errorf("web pipelines: %q", got[1].Metadata.Annotations["buildkite.com/pipeline-slug"])
	}

	// Every link and the overview carry the component label, which survives URL decoding even
	// with the namespace's "/".
	for i, label := range []string{"payments-api", "team-b/web"} {
		urls := []string{got[i].Metadata.Annotations["grafana/overview-dashboard"]}
		for _, l := range got[i].Metadata.Links {
			urls = append(urls, l.URL)
			if l.Title == "" {
				t.Errorf("%s: link %s has no title", label, l.URL)
			}
		}
		if len(urls) < 3 {
			t.Fatalf("%s: got %d urls, want the overview and two links", label, len(urls))
		}
		for _, raw := range urls {
			u, err := url.Parse(raw)
			if err != nil {
				t.Fatal(err)
			}
			if u.Query().Get("var-component") != label {
				t.Errorf("%s: %s carries var-component=%q", label, raw, u.Query().Get("var-component"))
			}
		}
		if !strings.HasPrefix(got[i].Metadata.Links[0].URL, "https://grafana.example.com"+ComponentPath+"?") {
			t.Errorf("%s: first link %q is not the component dashboard", label, got[i].Metadata.Links[0].URL)
		}
	}
}

func TestBackstageAnnotationsComments(t *testing.T) {
	var buf bytes.Buffer
	c := backstage.Component{Name: "a", Label: "a", Ref: "component:default/a", Source: "x.yaml"}
	if err := BackstageAnnotations(&buf, []backstage.Component{c}, "http://grafana:3000"); err != nil {
		t.Fatal(err)
	}
	if first, _, _ := strings.Cut(buf.String(), "\n"); first != `# component:default/a from "x.yaml", component label "a"` {
		t.Errorf("header comment: %q", first)
	}
	buf.Reset()
	if err := BackstageAnnotations(&buf, nil, "http://grafana:3000"); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(buf.String(), "# No catalog component") {
		t.Errorf("empty catalog: %q", buf.String())
	}
}

func TestBackstageAnnotationsRejectsBadGrafanaURL(t *testing.T) {
	c := []backstage.Component{{Name: "a", Label: "a", Ref: "component:default/a"}}
	for _, bad := range []string{"", "grafana.example.com", "ftp://grafana", "https://", "https://g/?orgId=1", "://x"} {
		var buf bytes.Buffer
		err := BackstageAnnotations(&buf, c, bad)
		if err == nil {
			t.Errorf("%q accepted", bad)
			continue
		}
		if !strings.Contains(err.Error(), "grafana URL") {
			t.Errorf("%q: error %q does not say which setting is wrong", bad, err)
		}
		if buf.Len() != 0 {
			t.Errorf("%q: wrote %q before failing", bad, buf.String())
		}
	}
	if err := BackstageAnnotations(io.Discard, []backstage.Component{{Ref: "component:default/x"}}, "https://g"); err == nil {
		t.Error("a component without label was accepted")
	}
}

// TestBackstageBadgeLines: one Markdown badge per environment after each component, as YAML
// comments, with a namespaced component's "/" kept as the handler's path separator.
func TestBackstageBadgeLines(t *testing.T) {
	c := backstage.Component{Name: "web", Namespace: "team-b", Label: "team-b/web", Ref: "component:team-b/web",
		Pipelines: []backstage.PipelineRef{{Org: "acme", Pipeline: "web-deploy"}}}
	var buf bytes.Buffer
	err := BackstageAnnotationsWith(&buf, []backstage.Component{c}, "https://grafana.example.com", BackstageOptions{
		BadgeURL:     "https://badges.example.com/",
		Environments: func(backstage.Component) []string { return []string{"production", "staging env"} },
	})
	if err != nil {
		t.Fatal(err)
	}
	want := "# README badges (Markdown), one per environment:\n" +
		"#   ![team-b/web production](https://badges.example.com/badges/team-b/web/production.svg)\n" +
		"#   ![team-b/web staging env](https://badges.example.com/badges/team-b/web/staging%20env.svg)\n"
	if !strings.HasSuffix(buf.String(), want) {
		t.Errorf("output does not end with the badge lines:\n%s", buf.String())
	}
	var p entityPatch
	if err := yaml.Unmarshal(buf.Bytes(), &p); err != nil || p.Metadata.Annotations["grafana/alert-label-selector"] != "component=team-b/web" {
		t.Errorf("the document with badge comments: %v, %v", err, p.Metadata.Annotations)
	}
}
