// Package backstage discovers, in a Backstage Software Catalog, the components that name Buildkite
// pipelines in their annotations. It reads catalog-info.yaml files or the Backstage catalog API and
// knows nothing of Buildkite's API or of Prometheus.
package backstage

import "strings"

// PipelineRef is an "<org-slug>/<pipeline-slug>" annotation value, validated.
type PipelineRef struct {
	Org      string
	Pipeline string
}

// String returns "<org>/<pipeline>", the form used in the annotation and in metric labels.
func (p PipelineRef) String() string { return p.Org + "/" + p.Pipeline }

// Component is a catalog entity with at least one valid Buildkite pipeline annotation.
type Component struct {
	Name      string // metadata.name
	Namespace string // metadata.namespace, "default" when unset
	// Label is the value of the metrics' component label: Name, or "Namespace/Name" outside the
	// default namespace, as valid UTF-8 (see ComponentLabel). No two components of a merged
	// Result share a Label.
	Label     string
	Ref       string // entity ref, "component:<namespace>/<name>"
	Owner     string // spec.owner
	System    string // spec.system
	Lifecycle string // spec.lifecycle
	Type      string // spec.type
	Tags      []string
	// Pipelines are the pipelines this component owns, in annotation order. A pipeline claimed by
	// two components belongs to one of them only (see the catalog's duplicate rule).
	Pipelines []PipelineRef
	// Source is where the entity came from: a file path or the Backstage URL.
	Source string
}

// ComponentLabel returns the component label value for an entity's namespace and name. Label
// values must be valid UTF-8, so bytes that are not become U+FFFD: two names that differ only
// there share a label, which Merge reports (ReasonDuplicateComponentLabel).
func ComponentLabel(namespace, name string) string {
	if namespace != "" && namespace != "default" {
		name = namespace + "/" + name
	}
	return strings.ToValidUTF8(name, "\uFFFD")
}
