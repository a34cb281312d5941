package status

import (
	"fmt"
	"net/url"
)

// Limits on what a request may ask, so that its cost is bounded by the snapshot, not the query.
const (
	maxQueryBytes = 1024
	maxValueBytes = 256
)

// params are the query parameters the page knows. An unknown one is refused rather than ignored:
// a typo (?compnent=shop) would otherwise show everything and look like a filter that matched.
var params = map[string]bool{"component": true, "owner": true, "problems": true, "format": true}

const knownParams = "component, owner, problems, format"

// parseQuery reads the filters and the format, refusing what the page does not know.
func parseQuery(raw string) (Filter, string, error) {
	var f Filter
	if len(raw) > maxQueryBytes {
		return f, "", fmt.Errorf("query longer than %d bytes", maxQueryBytes)
	}
	q, err := url.ParseQuery(raw)
	if err != nil {
		return f, "", fmt.Errorf("malformed query: %v", err)
	}
	for k, vs := range q {
		if !params[k] {
			return f, "", fmt.Errorf("unknown query parameter %q; known: %s", k, knownParams)
		}
		if len(vs) > 1 {
			return f, "", fmt.Errorf("query parameter %q given %d times; give it once", k, len(vs))
		}
		if len(vs[0]) > maxValueBytes {
			return f, "", fmt.Errorf("query parameter %q longer than %d bytes", k, maxValueBytes)
		}
	}
	f.Component, f.Owner = q.Get("component"), q.Get("owner")
	switch v := q.Get("problems"); v {
	case "", "0", "false":
	case "1", "true":
		f.Problems = true
	default:
		return f, "", fmt.Errorf("problems=%q: use problems=1", v)
	}
	format := q.Get("format")
	switch format {
	case "", "html":
		format = "html"
	case "json":
	default:
		return f, "", fmt.Errorf("format=%q: use format=json, or leave it out for HTML", format)
	}
	return f, format, nil
}
