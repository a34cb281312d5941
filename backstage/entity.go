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

// isBackstage reports whether the apiVersion is one of backstage.io's (backstage.io/<version>):
// near misses of kinds and annotation keys are reported only for such entities.
func (e *rawEntity) isBackstage() bool {
	v, _ := e.APIVersion.(string)
	return strings.HasPrefix(v, "backstage.io/")
}

// misspelledAnnotations returns "key (did you mean intended?)" for each annotation key that is a
// near miss of an accepted one, in key order.
func (e *rawEntity) misspelledAnnotations() []string {
	var out []string
	for k := range e.Metadata.Annotations {
		if intended, ok := nearestAnnotation(k); ok {
			out = append(out, fmt.Sprintf("%q (did you mean %q?)", clip(k, 100), intended))
		}
	}
	slices.Sort(out)
	return out
}

// checkAPIVersion returns a problem message when the apiVersion is missing or unknown.
func (e *rawEntity) checkAPIVersion() string {
	v, _ := e.APIVersion.(string)
	if v == "" {
		return fmt.Sprintf("apiVersion is missing; set it to %s", knownAPIVersions[0])
	}
	if !slices.Contains(knownAPIVersions, v) {
		return fmt.Sprintf("apiVersion %q is not one of %s; set it to %s", clip(v, 100), strings.Join(knownAPIVersions, ", "), knownAPIVersions[0])
	}
	return ""
}

// entityRef returns "kind:namespace/name" as well as it can, for messages (each part clipped).
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
	return clip(kind, 100) + ":" + clip(ns, 100) + "/" + clip(name, 200)
}

// maxEntityBytes caps the strings the exporter keeps of one entity (name, namespace, owner,
// system, lifecycle, type, tags and the accepted annotations' values). Backstage caps names,
// namespaces and tags at 63 characters; the budget is generous for real entities and bounds what
// a hostile catalog can make the exporter keep per entity.
const maxEntityBytes = 8 << 10

// outcome is what one entity turns into: a component, a problem, an ignored entity, or nothing.
type outcome struct {
	component *Component
	problem   *Problem
	ignored   *Problem
}

// toComponent validates an entity that is not a Location. source names where it came from (for
// Component.Source), where is the same with a line number when known (for problems).
func toComponent(e *rawEntity, source, where string) outcome {
	var misspelled []string
	if e.isBackstage() {
		misspelled = e.misspelledAnnotations()
	}
	if !e.hasBuildkiteAnnotation() && len(misspelled) == 0 {
		return outcome{} // most catalog entities have nothing to do with Buildkite
	}
	ref := e.entityRef()
	problem := func(r Reason, format string, args ...any) outcome {
		p := newProblem(r, where, ref, format, args...)
		return outcome{problem: &p}
	}
	if msg := e.checkAPIVersion(); msg != "" {
		return problem(ReasonUnknownAPIVersion, "%s", msg)
	}
	kind := e.kind()
	switch {
	case kind == "":
		return problem(ReasonInvalidEntity, "kind is missing; set kind: Component")
	case kind != kindComponent:
		if intended, ok := nearestKind(kind); ok {
			return problem(ReasonMisspelledKind, "kind %q is not a Backstage kind (kinds are case-sensitive; the catalog rejects this entity); did you mean %q? Write kind: %s",
				clip(kind, 100), intended, intended)
		}
		p := newProblem(ReasonUnsupportedKind, where, ref,
			"only kind Component is linked to pipelines; move the Buildkite annotation from this %s to its Component", clip(kind, 100))
		return outcome{ignored: &p}
	}
	if len(misspelled) > 0 {
		// Like a bad value, a misspelled key skips the whole entity: linking the pipelines of the
		// other keys would hide the typo behind metrics that look complete.
		return problem(ReasonMisspelledAnnotation, "annotation %s is not read by this exporter or the Buildkite plugins; rename the key (annotation keys are case-sensitive)",
			strings.Join(misspelled, ", "))
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
	size := len(name) + len(namespace)
	for _, f := range []struct {
		key string
		dst *string
	}{{"owner", &c.Owner}, {"system", &c.System}, {"lifecycle", &c.Lifecycle}, {"type", &c.Type}} {
		v, ok := scalarString(e.Spec[f.key])
		if !ok {
			return problem(ReasonInvalidEntity, "spec.%s must be a string", f.key)
		}
		size += len(v)
		// These become label values (buildkite_component_info), which must be valid UTF-8.
		*f.dst = strings.ToValidUTF8(v, "\uFFFD")
	}
	switch tags := e.Metadata.Tags.(type) {
	case nil:
	case []any:
		for _, t := range tags {
			s, ok := scalarString(t)
			if !ok || s == "" {
				return problem(ReasonInvalidEntity, "metadata.tags must be a list of strings")
			}
			size += len(s)
			if size > maxEntityBytes {
				break
			}
			c.Tags = append(c.Tags, strings.ToValidUTF8(s, "\uFFFD"))
		}
	default:
		return problem(ReasonInvalidEntity, "metadata.tags must be a list of strings")
	}
	for _, key := range Annotations {
		if s, ok := e.Metadata.Annotations[key].(string); ok {
			size += len(s)
		}
	}
	if size > maxEntityBytes {
		return problem(ReasonInvalidEntity, "its name, namespace, spec fields, tags and Buildkite annotations add up to more than %d KiB; no real entity is that large, shorten them", maxEntityBytes>>10)
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
