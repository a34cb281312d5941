package backstage

import (
	"fmt"
	"strings"
)

// The annotation keys that link an entity to Buildkite pipelines, in the order their values are
// read. Each value is "<org-slug>/<pipeline-slug>", or several of them separated by commas.
const (
	// AnnotationPipelineSlug is the official Buildkite plugin's key (buildkite/backstage-plugin).
	AnnotationPipelineSlug = "buildkite.com/pipeline-slug"
	// AnnotationProjectSlug is RoadieHQ's @roadiehq/backstage-plugin-buildkite key.
	AnnotationProjectSlug = "buildkite.com/project-slug"
	// AnnotationPipeline is the cicd-statistics-module-buildkite key.
	AnnotationPipeline = "buildkite.com/pipeline"
)

// Annotations are the keys above, in the order their pipelines are listed on a Component.
var Annotations = []string{AnnotationPipelineSlug, AnnotationProjectSlug, AnnotationPipeline}

// ParsePipelineRefs parses an annotation value: one or more comma-separated
// "<org-slug>/<pipeline-slug>" pairs (several pipelines per component is this exporter's extension).
// White space around each pair is ignored. The error says what to write instead.
func ParsePipelineRefs(value string) ([]PipelineRef, error) {
	if strings.TrimSpace(value) == "" {
		return nil, fmt.Errorf("the value is empty; write <org-slug>/<pipeline-slug>, as in the pipeline's URL https://buildkite.com/<org-slug>/<pipeline-slug>")
	}
	var refs []PipelineRef
	for part := range strings.SplitSeq(value, ",") {
		ref, err := ParsePipelineRef(strings.TrimSpace(part))
		if err != nil {
			return nil, err
		}
		refs = append(refs, ref)
	}
	return refs, nil
}

// ParsePipelineRef parses one "<org-slug>/<pipeline-slug>" pair.
func ParsePipelineRef(s string) (PipelineRef, error) {
	const hint = "copy <org-slug>/<pipeline-slug> from the pipeline's URL https://buildkite.com/<org-slug>/<pipeline-slug>"
	if s == "" {
		return PipelineRef{}, fmt.Errorf("empty entry between commas; remove the extra comma")
	}
	if i := strings.Index(s, "buildkite.com/"); i >= 0 {
		return PipelineRef{}, fmt.Errorf("%q is a URL; write only the %q part", s, strings.TrimSuffix(s[i+len("buildkite.com/"):], "/"))
	}
	org, pipeline, ok := strings.Cut(s, "/")
	switch {
	case !ok:
		return PipelineRef{}, fmt.Errorf("%q has no \"/\"; write <org-slug>/%s (%s)", s, s, hint)
	case strings.Contains(pipeline, "/"):
		return PipelineRef{}, fmt.Errorf("%q has more than one \"/\"; %s", s, hint)
	case org == "":
		return PipelineRef{}, fmt.Errorf("%q has an empty organization slug; %s", s, hint)
	case pipeline == "":
		return PipelineRef{}, fmt.Errorf("%q has an empty pipeline slug; %s", s, hint)
	}
	for _, part := range []struct{ what, slug string }{{"organization", org}, {"pipeline", pipeline}} {
		if err := checkSlug(part.slug); err != nil {
			return PipelineRef{}, fmt.Errorf("%q: %s slug %q %w", s, part.what, part.slug, err)
		}
	}
	return PipelineRef{Org: org, Pipeline: pipeline}, nil
}

// checkSlug accepts what Buildkite generates from a name: lower-case ASCII letters, digits and '-',
// not starting with '-'. Buildkite turns every other character into '-' (its docs show the
// pipeline name "my_project" with the slug "my-project"; buildkite/docs, environment variables
// page, BUILDKITE_PIPELINE_NAME and BUILDKITE_PIPELINE_SLUG), so '_', '.', spaces and upper case
// never occur in a real slug and point at a typo or at the pipeline's display name.
func checkSlug(slug string) error {
	if lower := strings.ToLower(slug); lower != slug && checkSlug(lower) == nil {
		return fmt.Errorf("has upper-case letters; slugs are lower case: %q", lower)
	}
	if strings.ContainsAny(slug, " \t") {
		return fmt.Errorf("has spaces; that looks like the display name, use the slug from the URL (spaces become \"-\")")
	}
	if slug[0] == '-' {
		return fmt.Errorf("starts with \"-\"; slugs start with a letter or digit")
	}
	for _, r := range slug {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' {
			return fmt.Errorf("has %q; Buildkite slugs hold only lower-case letters, digits and \"-\"", r)
		}
	}
	return nil
}
