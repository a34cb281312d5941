package backstage

import (
	"fmt"
	"slices"
	"strings"
)

// The entity apiVersions this package understands. Both describe the same Component and Location
// shapes (backstage.io/v1beta1 is the older spelling still accepted by the catalog).
var knownAPIVersions = []string{"backstage.io/v1alpha1", "backstage.io/v1beta1"}

// rawEntity is the part of a Backstage entity envelope this package reads. Fields that users write
// by hand are `any` so that a wrong shape in an unrelated entity (a Template's spec, say) never
// fails a whole document; shapes are checked only for entities that carry a Buildkite annotation.
type rawEntity struct {
	APIVersion any `yaml:"apiVersion" json:"apiVersion"`
	Kind       any `yaml:"kind" json:"kind"`
	Metadata   struct {
		Name        any            `yaml:"name" json:"name"`
		Namespace   any            `yaml:"namespace" json:"namespace"`
		Annotations map[string]any `yaml:"annotations" json:"annotations"`
		Tags        any            `yaml:"tags" json:"tags"`
	} `yaml:"metadata" json:"metadata"`
	Spec map[string]any `yaml:"spec" json:"spec"`
}

func (e *rawEntity) kind() string {
	s, _ := e.Kind.(string)
	return s
}

// hasBuildkiteAnnotation reports whether any of the Annotations keys is present, whatever its value.
func (e *rawEntity) hasBuildkiteAnnotation() bool {
	for _, k := range Annotations {
		if _, ok := e.Metadata.Annotations[k]; ok {
			return true
		}
	}
	return false
}

// checkAPIVersion returns a problem message when the apiVersion is missing or unknown.
func (e *rawEntity) checkAPIVersion() string {
	v, _ := e.APIVersion.(string)
	if v == "" {
		return fmt.Sprintf("apiVersion is missing; set it to %s", knownAPIVersions[0])
	}
	if !slices.Contains(knownAPIVersions, v) {
		return fmt.Sprintf("apiVersion %q is not one of %s; set it to %s", v, strings.Join(knownAPIVersions, ", "), knownAPIVersions[0])
	}
	return ""
}

// entityRef returns "kind:namespace/name" as well as it can, for messages.
func (e *rawEntity) entityRef() string {
	kind := strings.ToLower(e.kind())
	if kind == "" {
		kind = "<no kind>"
	}
	name, _ := e.Metadata.Name.(string)
	if name == "" {
		name = "<no name>"
	}
	ns, _ := e.Metadata.Namespace.(string)
	if ns == "" {
		ns = "default"
	}
	return kind + ":" + ns + "/" + name
}

// outcome is what one entity turns into: a component, a problem, an ignored entity, or nothing.
type outcome struct {
	component *Component
	problem   *Problem
	ignored   *Problem
}

// toComponent validates an entity that is not a Location. source names where it came from (for
// Component.Source), where is the same with a line number when known (for problems).
func toComponent(e *rawEntity, source, where string) outcome {
	if !e.hasBuildkiteAnnotation() {
		return outcome{} // most catalog entities have nothing to do with Buildkite
	}
	ref := e.entityRef()
	problem := func(r Reason, format string, args ...any) outcome {
		return outcome{problem: &Problem{Reason: r, Source: where, Entity: ref, Message: fmt.Sprintf(format, args...)}}
	}
	if msg := e.checkAPIVersion(); msg != "" {
		return problem(ReasonUnknownAPIVersion, "%s", msg)
	}
	kind := e.kind()
	switch {
	case kind == "":
		return problem(ReasonInvalidEntity, "kind is missing; set kind: Component")
	case !strings.EqualFold(kind, "Component"):
		return outcome{ignored: &Problem{Reason: ReasonUnsupportedKind, Source: where, Entity: ref,
			Message: fmt.Sprintf("only kind Component is linked to pipelines; move the Buildkite annotation from this %s to its Component", kind)}}
	}

	name, ok := e.Metadata.Name.(string)
	if !ok && e.Metadata.Name != nil {
		return problem(ReasonInvalidEntity, "metadata.name must be a string")
	}
	if strings.TrimSpace(name) == "" {
		return problem(ReasonMissingName, "metadata.name is missing; every entity needs a name")
	}
	namespace, ok := e.Metadata.Namespace.(string)
	if !ok && e.Metadata.Namespace != nil {
		return problem(ReasonInvalidEntity, "metadata.namespace must be a string")
	}
	if namespace == "" || strings.EqualFold(namespace, "default") {
		namespace = "default"
	}
	c := Component{
		Name:      name,
		Namespace: namespace,
		Label:     ComponentLabel(namespace, name),
		Ref:       "component:" + namespace + "/" + name,
		Source:    source,
	}
	for _, f := range []struct {
		key string
		dst *string
	}{{"owner", &c.Owner}, {"system", &c.System}, {"lifecycle", &c.Lifecycle}, {"type", &c.Type}} {
		v, ok := scalarString(e.Spec[f.key])
		if !ok {
			return problem(ReasonInvalidEntity, "spec.%s must be a string", f.key)
		}
		*f.dst = v
	}
	switch tags := e.Metadata.Tags.(type) {
	case nil:
	case []any:
		for _, t := range tags {
			s, ok := scalarString(t)
			if !ok || s == "" {
				return problem(ReasonInvalidEntity, "metadata.tags must be a list of strings")
			}
			c.Tags = append(c.Tags, s)
		}
	default:
		return problem(ReasonInvalidEntity, "metadata.tags must be a list of strings")
	}

	var bad []string
	for _, key := range Annotations {
		v, present := e.Metadata.Annotations[key]
		if !present {
			continue
		}
		s, ok := v.(string)
		if !ok {
			bad = append(bad, fmt.Sprintf("%s must be a string \"<org-slug>/<pipeline-slug>\"", key))
			continue
		}
		refs, err := ParsePipelineRefs(s)
		if err != nil {
			bad = append(bad, key+": "+err.Error())
			continue
		}
		for _, r := range refs {
			if !slices.Contains(c.Pipelines, r) { // the same pipeline under two keys is one link
				c.Pipelines = append(c.Pipelines, r)
			}
		}
	}
	if len(bad) > 0 {
		// The whole entity is skipped, not just the bad value: a half-linked component would hide
		// the typo behind metrics that look complete.
		return problem(ReasonInvalidAnnotation, "%s", strings.Join(bad, "; "))
	}
	return outcome{component: &c}
}

// scalarString returns a YAML/JSON scalar as a string ("" for absent); false for lists and maps.
func scalarString(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", true
	case string:
		return v, true
	case bool, int, int64, uint64, float64:
		return fmt.Sprint(v), true
	default:
		return "", false
	}
}
