package buildkitetest

import (
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// RouteAnnotations lists a build's annotations (reference §7): GET, scope read_builds,
// page/per_page paginated with a Link header like the build listings.
const RouteAnnotations = "/v2/organizations/{org}/pipelines/{pipeline}/builds/{number}/annotations"

// annotationJSON is an annotation as the API renders it: body_html is absent with omit_body=true.
type annotationJSON struct {
	ID        string  `json:"id"`
	Context   string  `json:"context"`
	Style     string  `json:"style"`
	Scope     string  `json:"scope"`
	JobID     *string `json:"job_id"`
	Priority  int     `json:"priority"`
	BodyHTML  *string `json:"body_html,omitempty"`
	CreatedAt string  `json:"created_at"`
	UpdatedAt string  `json:"updated_at"`
}

// Annotate adds an annotation to build number of org/pipeline as `buildkite-agent annotate` does
// (reference §13): an annotation with the same context (and scope) is replaced, keeping its id
// and created_at, unless appendBody is set, which appends the body to it. It fills, when zero:
// context ("default", the agent's), style ("default" is shown as info: the fake stores "info"),
// scope ("build"), priority (3), id, created_at and updated_at (clock). BodyHTML is stored as
// given (the fake does not render Markdown). It returns the stored annotation.
func (f *Fake) Annotate(orgSlug, pipeline string, number int, a buildkite.Annotation, appendBody bool) (buildkite.Annotation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	r, err := f.buildLocked(orgSlug, pipeline, number)
	if err != nil {
		return buildkite.Annotation{}, err
	}
	if a.Context == "" {
		a.Context = "default"
	}
	if a.Style == "" {
		a.Style = buildkite.AnnotationStyleInfo
	}
	if a.Scope == "" {
		a.Scope = "build"
	}
	if a.Priority == 0 {
		a.Priority = 3
	}
	// The API keeps milliseconds.
	now := buildkite.Timestamp{Time: f.now().UTC().Truncate(time.Millisecond)}
	for i := range r.annotations {
		old := &r.annotations[i]
		if old.Context != a.Context || old.Scope != a.Scope || old.JobID != a.JobID {
			continue
		}
		if appendBody {
			a.BodyHTML = old.BodyHTML + a.BodyHTML
		}
		a.ID, a.CreatedAt = old.ID, old.CreatedAt
		if a.UpdatedAt.IsZero() {
			a.UpdatedAt = now
		}
		*old = a
		return a, nil
	}
	f.seq++
	if a.ID == "" {
		a.ID = fmt.Sprintf("01940000-0000-4000-8000-%012x", f.seq)
	}
	if a.CreatedAt.IsZero() {
		a.CreatedAt = now
	}
	if a.UpdatedAt.IsZero() {
		a.UpdatedAt = a.CreatedAt
	}
	r.annotations = append(r.annotations, a)
	return a, nil
}

// listAnnotations answers GET …/builds/{number}/annotations: the build's annotations in the
// order they were made [inference: the docs do not say], filtered by scope (build, job or all;
// default build), omit_body=true dropping body_html, paginated by page/per_page (default 30,
// max 100) with the Link header of the build listings.
func (f *Fake) listAnnotations(r *http.Request, rt route, q url.Values, resp *response) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	rec := f.lookupBuild(rt, resp)
	if rec == nil {
		return
	}
	scope := q.Get("scope")
	switch scope {
	case "":
		scope = "build"
	case "build", "job", "all":
	default:
		resp.message(http.StatusBadRequest, "Scope must be one of build, job, all")
		return
	}
	var match []buildkite.Annotation
	for _, a := range rec.annotations {
		if scope == "all" || a.Scope == scope {
			match = append(match, a)
		}
	}
	p := parsePage(q)
	omit := boolParam(q, "omit_body")
	out := make([]annotationJSON, 0, p.perPage)
	for _, a := range cut(match, p) {
		j := annotationJSON{ID: a.ID, Context: a.Context, Style: a.Style, Scope: a.Scope, Priority: a.Priority,
			CreatedAt: a.CreatedAt.UTC().Format(msLayout), UpdatedAt: a.UpdatedAt.UTC().Format(msLayout)}
		if a.JobID != "" {
			j.JobID = &a.JobID
		}
		if !omit {
			body := a.BodyHTML
			j.BodyHTML = &body
		}
		out = append(out, j)
	}
	resp.json(http.StatusOK, out)
	setLink(resp.header, r, p, len(match))
}

// msLayout is RFC 3339 with milliseconds in UTC, as the API writes build and annotation times.
const msLayout = "2006-01-02T15:04:05.000Z"
