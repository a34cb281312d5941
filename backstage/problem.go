package backstage

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// Reason classifies why an entity, a file or the catalog API could not be used. The values are the
// `reason` label of buildkite_exporter_catalog_errors: short, snake_case, stable.
type Reason string

// The reasons a catalog refresh reports. Each one names something a person can fix.
const (
	// ReasonInvalidAnnotation: an annotation value is not "<org-slug>/<pipeline-slug>"[,...].
	ReasonInvalidAnnotation Reason = "invalid_annotation"
	// ReasonDuplicatePipeline: a pipeline is claimed by two components; the loser drops it.
	ReasonDuplicatePipeline Reason = "duplicate_pipeline"
	// ReasonDuplicateEntity: one entity ref is defined twice with different content.
	ReasonDuplicateEntity Reason = "duplicate_entity"
	// ReasonMissingName: an annotated entity has no metadata.name.
	ReasonMissingName Reason = "missing_name"
	// ReasonInvalidEntity: an annotated entity has no kind, or a field of the wrong shape.
	ReasonInvalidEntity Reason = "invalid_entity"
	// ReasonUnknownAPIVersion: an annotated entity or a Location has an apiVersion other than
	// backstage.io/v1alpha1 or backstage.io/v1beta1.
	ReasonUnknownAPIVersion Reason = "unknown_api_version"
	// ReasonUnreadableFile: a configured path or Location target does not exist, matches nothing,
	// or cannot be read.
	ReasonUnreadableFile Reason = "unreadable_file"
	// ReasonMalformedYAML: a file is not valid YAML (the problem names the line).
	ReasonMalformedYAML Reason = "malformed_yaml"
	// ReasonLocationCycle: Location targets lead back to a file that is already being read.
	ReasonLocationCycle Reason = "location_cycle"
	// ReasonUnsupportedLocation: a Location target is a URL; only local files are followed.
	ReasonUnsupportedLocation Reason = "unsupported_location"
	// ReasonBackstageAPI: the Backstage catalog API could not be queried (network, 401, 5xx, bad body,
	// a redirect to another scheme, host or port, a cursor that repeats, more pages or entities than
	// one refresh reads).
	ReasonBackstageAPI Reason = "backstage_api"
	// ReasonMisspelledAnnotation: a Backstage entity has an annotation key within two edits (or a
	// change of case) of buildkite.com/pipeline-slug, buildkite.com/project-slug or
	// buildkite.com/pipeline. The entity is skipped; fix: rename the key to the one the problem
	// names (annotation keys are case-sensitive).
	ReasonMisspelledAnnotation Reason = "misspelled_annotation"
	// ReasonMisspelledKind: a Backstage entity's kind is within two edits (or a change of case) of
	// Component or Location. Backstage compares kinds case-sensitively and rejects such an entity,
	// so it is skipped (a Location's targets are not read); fix: write kind: Component or
	// kind: Location exactly.
	ReasonMisspelledKind Reason = "misspelled_kind"
	// ReasonDuplicateComponentLabel: two components have the same component label (the name, or
	// namespace/name outside the default namespace; bytes that are not UTF-8 become U+FFFD), so
	// their series would mix. The one with the larger entity ref is skipped; fix: rename one of them.
	ReasonDuplicateComponentLabel Reason = "duplicate_component_label"
	// ReasonComponentSpansShards: with --buildkite.organization, a component has pipelines both
	// in this instance's organizations and in others, so its series are split between shards.
	// This instance keeps the pipelines of its organizations; fix: give all of the component's
	// organizations to one shard, or split the component.
	ReasonComponentSpansShards Reason = "component_spans_shards"

	// ReasonUnsupportedKind is not an error: an entity of another kind than Component carries a
	// Buildkite annotation. It is logged at debug level and listed in Result.Ignored only.
	ReasonUnsupportedKind Reason = "unsupported_kind"
)

// Reasons lists every error reason, in a stable order. The collector exports each of them, with 0
// when there is none, so that alerts see the series before the first error.
var Reasons = []Reason{
	ReasonInvalidAnnotation,
	ReasonDuplicatePipeline,
	ReasonDuplicateEntity,
	ReasonMissingName,
	ReasonInvalidEntity,
	ReasonUnknownAPIVersion,
	ReasonUnreadableFile,
	ReasonMalformedYAML,
	ReasonLocationCycle,
	ReasonUnsupportedLocation,
	ReasonBackstageAPI,
	ReasonMisspelledAnnotation,
	ReasonMisspelledKind,
	ReasonDuplicateComponentLabel,
	ReasonComponentSpansShards,
}

// Problem is one thing wrong with the catalog. The entity or file it concerns is skipped; the rest
// of the catalog keeps working.
type Problem struct {
	Reason Reason
	// Source is where the problem is: "path/to/file.yaml:12" or the Backstage URL.
	Source string
	// Entity is the entity ref ("component:default/shop") when one is known.
	Entity string
	// Message says what is wrong and how to fix it.
	Message string
}

func (p Problem) String() string {
	where := p.Source
	if p.Entity != "" {
		if where != "" {
			where += ": "
		}
		where += p.Entity
	}
	if where == "" {
		return fmt.Sprintf("%s (%s)", p.Message, p.Reason)
	}
	return fmt.Sprintf("%s: %s (%s)", where, p.Message, p.Reason)
}

// Limits on what a Problem keeps of its input: a hostile entity name or annotation value must not
// make every problem (and every log line) megabytes long.
const (
	maxProblemField   = 512  // Source and Entity
	maxProblemMessage = 2048 // Message
)

// newProblem builds a Problem whose fields are valid UTF-8 and bounded in size.
func newProblem(r Reason, source, entity, format string, args ...any) Problem {
	return Problem{Reason: r, Source: clip(source, maxProblemField), Entity: clip(entity, maxProblemField),
		Message: clip(fmt.Sprintf(format, args...), maxProblemMessage)}
}

// clip returns s as valid UTF-8, cut to at most n bytes (plus "…") on a rune boundary.
func clip(s string, n int) string {
	s = strings.ToValidUTF8(s, "\uFFFD")
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
