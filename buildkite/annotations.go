package buildkite

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
)

// routeAnnotations is the annotations listing of one build (reference §7, scope read_builds).
const routeAnnotations = "/v2/organizations/{org}/pipelines/{pipeline}/builds/{number}/annotations"

// Limits on what the client keeps of an annotations listing; the excess is dropped and counted in
// buildkite_exporter_api_dropped_total{what} like the other limits.
const (
	// MaxAnnotationsPerBuild is how many annotations of one build are kept: the first page of
	// per_page=100 (the API's maximum), the first in the answer's order. Items beyond it, and a
	// next page left unread (counted once), count as what="annotations". A pipeline that
	// annotates a deployment writes one or two; a hundred is a build that annotates every test.
	MaxAnnotationsPerBuild = MaxPerPage
	// MaxAnnotationContextLen: an annotation whose context is longer is dropped
	// (what="annotations"): buildkite-agent annotate refuses contexts over 100 characters, so a
	// longer one is not an annotation a pipeline made, and cutting it could forge a match.
	MaxAnnotationContextLen = 256
	// MaxAnnotationBodyLen: a longer body_html is cut to this many bytes on a rune boundary
	// (what="annotation_bodies"). Bodies may be 1 MiB; the exporter asks for none (omit_body)
	// and keeps at most this much of one a server sends anyway.
	MaxAnnotationBodyLen = 1024
)

// Values of the what label for annotations.
const (
	dropAnnotations      = "annotations"       // beyond MaxAnnotationsPerBuild, or with an oversized context
	dropAnnotationBodies = "annotation_bodies" // bodies cut to MaxAnnotationBodyLen
)

// Annotation styles (reference §7, §13).
const (
	AnnotationStyleSuccess = "success"
	AnnotationStyleInfo    = "info"
	AnnotationStyleWarning = "warning"
	AnnotationStyleError   = "error"
)

// Annotation is one annotation of a build, as GET …/builds/{number}/annotations lists it.
type Annotation struct {
	ID        string    `json:"id"`
	Context   string    `json:"context"`
	Style     string    `json:"style"`
	Scope     string    `json:"scope,omitempty"` // build or job
	JobID     string    `json:"job_id,omitempty"`
	Priority  int       `json:"priority,omitempty"`
	BodyHTML  string    `json:"body_html,omitempty"`
	CreatedAt Timestamp `json:"created_at"`
	UpdatedAt Timestamp `json:"updated_at"`
}

// ListAnnotationsOptions are the query parameters of the annotations listing.
type ListAnnotationsOptions struct {
	// OmitBody asks for no body_html (omit_body=true): the exporter needs contexts and styles.
	OmitBody bool
}

// ListAnnotations lists the build-scoped annotations of build number of org/pipeline (scope
// read_builds), at most MaxAnnotationsPerBuild of them: one page of per_page=100, a next page
// left unread. Redirects, next-page links and error bodies get the protections of every other
// endpoint (the token never leaves the base URL, errors are scrubbed).
func (c *Client) ListAnnotations(ctx context.Context, org, pipeline string, number int, opts ListAnnotationsOptions) ([]Annotation, error) {
	path, err := buildPath(org, pipeline, number)
	if err != nil {
		return nil, err
	}
	var q query
	q.addTrue("omit_body", opts.OmitBody)
	q.add("per_page", strconv.Itoa(MaxAnnotationsPerBuild))
	r := c.newRequest(routeAnnotations,
		fmt.Sprintf("build %s/%s#%d (or its organization or pipeline)", org, pipeline, number),
		path+"/annotations", q.String())
	var out []Annotation
	d := drops{}
	truncated, err := paginate(ctx, c, r, 1, func(body []byte, page int) error {
		items, extra, err := decodeArray(body, MaxAnnotationsPerBuild, func(dec *json.Decoder, a *Annotation) error {
			return dec.Decode(a)
		})
		if err != nil {
			return c.decodeError(r.endpoint, err)
		}
		d.add(dropAnnotations, extra)
		for _, a := range items {
			if len(a.Context) > MaxAnnotationContextLen {
				d.add(dropAnnotations, 1)
				continue
			}
			if len(a.BodyHTML) > MaxAnnotationBodyLen {
				a.BodyHTML = cutRunes(a.BodyHTML, MaxAnnotationBodyLen)
				d.add(dropAnnotationBodies, 1)
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if truncated {
		d.add(dropAnnotations, 1)
	}
	c.recordDrops(r.endpoint, 0, d)
	if out == nil {
		out = []Annotation{}
	}
	return out, nil
}
