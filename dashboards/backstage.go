package dashboards

import (
	"fmt"
	"io"
	"net/url"
	"sort"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
)

// ComponentURL is the component dashboard of one component under a Grafana root URL.
func ComponentURL(grafanaURL, component string) string {
	return strings.TrimSuffix(grafanaURL, "/") + ComponentPath + "?var-component=" + url.QueryEscape(component)
}

// entityPatch is the part of a catalog-info.yaml that links a component page to Grafana.
type entityPatch struct {
	Metadata struct {
		Annotations map[string]string `yaml:"annotations"`
		Links       []entityLink      `yaml:"links"`
	} `yaml:"metadata"`
}

type entityLink struct {
	URL   string `yaml:"url"`
	Title string `yaml:"title"`
	Icon  string `yaml:"icon"`
}

// BackstageAnnotations prints, for every component, the annotations and links to merge into its
// catalog-info.yaml so that its Backstage page lists the dashboards (Grafana plugin dashboards
// card), embeds its component dashboard (overview card) and links to it. grafanaURL is Grafana's
// public root URL, the one readers' browsers open. Components come out sorted by entity ref, each
// as its own YAML document headed by a comment naming the entity and the file it came from.
func BackstageAnnotations(w io.Writer, components []backstage.Component, grafanaURL string) error {
	return BackstageAnnotationsWith(w, components, grafanaURL, BackstageOptions{})
}

// BackstageOptions add what needs more than the catalog and Grafana's URL.
type BackstageOptions struct {
	// BadgeURL is the exporter's URL as README readers reach it (see docs/badges.md); empty
	// prints no badge lines.
	BadgeURL string
	// Environments are the environments of a component a badge line is printed for.
	Environments func(backstage.Component) []string
}

// BadgeURL is the badge of a component's environment under the exporter's root URL; the
// component's "/" (namespace/name) stays a path separator, as the badge handler expects.
func BadgeURL(root, component, environment string) string {
	parts := strings.Split(component, "/")
	for i := range parts {
		parts[i] = url.PathEscape(parts[i])
	}
	return strings.TrimSuffix(root, "/") + "/badges/" + strings.Join(parts, "/") + "/" + url.PathEscape(environment) + ".svg"
}

// BackstageAnnotationsWith is BackstageAnnotations with badge lines: after each component's
// document, a Markdown image per environment for its README, as YAML comments.
func BackstageAnnotationsWith(w io.Writer, components []backstage.Component, grafanaURL string, opts BackstageOptions) error {
	u, err := url.Parse(grafanaURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("grafana URL %q: need Grafana's absolute http(s) root URL, e.g. https://grafana.example.com", grafanaURL)
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("grafana URL %q: remove the query and fragment; give Grafana's root URL, e.g. https://grafana.example.com", grafanaURL)
	}
	root := strings.TrimSuffix(u.String(), "/")

	sorted := append([]backstage.Component(nil), components...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Ref < sorted[j].Ref })
	if len(sorted) == 0 {
		_, err := fmt.Fprintln(w, "# No catalog component names a Buildkite pipeline; nothing to add.")
		return err
	}
	for i, c := range sorted {
		if c.Label == "" {
			return fmt.Errorf("component %q (from %s) has no component label; it was not read from the catalog", c.Ref, c.Source)
		}
		var p entityPatch
		p.Metadata.Annotations = map[string]string{
			"grafana/dashboard-selector": Tag,
			// kiosk hides Grafana's chrome inside the overview card's iframe.
			"grafana/overview-dashboard": ComponentURL(root, c.Label) + "&kiosk",
			// The alerts card: the Grafana-managed rules of the grafana-alerts command carry
			// this label (the plugin matches rule labels exactly).
			"grafana/alert-label-selector": "component=" + c.Label,
		}
		if len(c.Pipelines) > 0 {
			refs := make([]string, len(c.Pipelines))
			for j, r := range c.Pipelines {
				refs[j] = r.String()
			}
			p.Metadata.Annotations[backstage.AnnotationPipelineSlug] = strings.Join(refs, ",")
		}
		p.Metadata.Links = []entityLink{
			{URL: ComponentURL(root, c.Label), Title: "Deployments (Grafana)", Icon: "dashboard"},
			{URL: root + "/d/" + SLOUID + "/buildkite-deployments-slos?var-component=" + url.QueryEscape(c.Label), Title: "Deployment SLOs (Grafana)", Icon: "dashboard"},
		}
		out, err := yaml.Marshal(p)
		if err != nil {
			return fmt.Errorf("component %s: %w", c.Ref, err)
		}
		if i > 0 {
			if _, err := fmt.Fprintln(w, "---"); err != nil {
				return err
			}
		}
		source := c.Source
		if source == "" {
			source = "unknown source"
		}
		if _, err := fmt.Fprintf(w, "# %s from %q, component label %q\n%s", c.Ref, source, c.Label, out); err != nil {
			return err
		}
		if err := badgeLines(w, c, opts); err != nil {
			return err
		}
	}
	return nil
}

// badgeLines prints the README badge lines of c as YAML comments.
func badgeLines(w io.Writer, c backstage.Component, opts BackstageOptions) error {
	if opts.BadgeURL == "" || opts.Environments == nil {
		return nil
	}
	envs := opts.Environments(c)
	if len(envs) == 0 {
		return nil
	}
	if _, err := fmt.Fprintln(w, "# README badges (Markdown), one per environment:"); err != nil {
		return err
	}
	for _, env := range envs {
		if _, err := fmt.Fprintf(w, "#   ![%s %s](%s)\n", c.Label, env, BadgeURL(opts.BadgeURL, c.Label, env)); err != nil {
			return err
		}
	}
	return nil
}
