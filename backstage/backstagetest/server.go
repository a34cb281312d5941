// Package backstagetest is a fake Backstage catalog API for tests. It serves
// GET /api/catalog/entities/by-query the way plugins/catalog-backend does: `filter` parameters
// (repeated = any of; "a=b,c" inside one = all of; a bare key = the key exists; keys and values
// compared case-insensitively on the flattened entity), `fields` projection, `limit` (default 20),
// cursor pagination through pageInfo.nextCursor (a cursor request carries no filter: the cursor
// encodes it), Bearer-token authentication answering 401 with Backstage's error body, and injected
// failures.
package backstagetest

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
)

// DefaultLimit is the page size when a request sends no limit, as in the catalog backend.
const DefaultLimit = 20

// Server is an http.Handler; wrap it in httptest.NewServer or call it in-process.
type Server struct {
	token string

	mu       sync.Mutex
	entities []map[string]any
	status   int // when non-zero, every request answers this status
	requests []url.Values
}

// New returns a fake catalog requiring "Authorization: Bearer <token>" (none when token is empty).
func New(token string) *Server { return &Server{token: token} }

// SetEntities replaces the catalog. Entities are JSON-like maps (as decoded from YAML or JSON).
func (s *Server) SetEntities(entities ...map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.entities = slices.Clone(entities)
}

// Fail makes every following request answer status with Backstage's error body; 0 heals.
func (s *Server) Fail(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status = status
}

// Requests returns the query strings received so far, in order.
func (s *Server) Requests() []url.Values {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// Entity builds a Component entity with the given annotations, for tests.
func Entity(namespace, name, owner string, annotations map[string]string) map[string]any {
	ann := map[string]any{}
	for k, v := range annotations {
		ann[k] = v
	}
	md := map[string]any{"name": name, "annotations": ann}
	if namespace != "" {
		md["namespace"] = namespace
	}
	return map[string]any{
		"apiVersion": "backstage.io/v1alpha1",
		"kind":       "Component",
		"metadata":   md,
		"spec":       map[string]any{"owner": owner, "type": "service", "lifecycle": "production", "system": "shop", "extra": "not requested"},
		"relations":  []any{map[string]any{"type": "ownedBy", "targetRef": "group:default/" + owner}},
	}
}

type cursor struct {
	Filters []string `json:"filters"`
	Offset  int      `json:"offset"`
}

func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.URL.Query())

	if r.URL.Path != "/api/catalog/entities/by-query" {
		writeError(w, r, http.StatusNotFound, "NotFoundError", "Not Found")
		return
	}
	if r.Method != http.MethodGet {
		writeError(w, r, http.StatusMethodNotAllowed, "Error", "Method Not Allowed")
		return
	}
	if s.token != "" && r.Header.Get("Authorization") != "Bearer "+s.token {
		writeError(w, r, http.StatusUnauthorized, "AuthenticationError", "Missing credentials")
		return
	}
	if s.status != 0 {
		writeError(w, r, s.status, "Error", http.StatusText(s.status))
		return
	}

	q := r.URL.Query()
	limit := DefaultLimit
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 0 {
			writeError(w, r, http.StatusBadRequest, "InputError", "Invalid limit, not an integer on string form")
			return
		}
		limit = n
	}
	var c cursor
	if raw := q.Get("cursor"); raw != "" {
		b, err := base64.StdEncoding.DecodeString(raw)
		if err != nil || json.Unmarshal(b, &c) != nil {
			writeError(w, r, http.StatusBadRequest, "InputError", "Malformed cursor")
			return
		}
	} else {
		c.Filters = q["filter"]
	}

	var matched []map[string]any
	for _, e := range s.entities {
		if matches(e, c.Filters) {
			matched = append(matched, e)
		}
	}
	slices.SortStableFunc(matched, func(a, b map[string]any) int { return strings.Compare(refOf(a), refOf(b)) })

	end := min(c.Offset+limit, len(matched))
	start := min(c.Offset, end)
	items := make([]any, 0, end-start)
	for _, e := range matched[start:end] {
		items = append(items, project(e, q["fields"]))
	}
	pageInfo := map[string]string{}
	if end < len(matched) {
		b, _ := json.Marshal(cursor{Filters: c.Filters, Offset: end})
		pageInfo["nextCursor"] = base64.StdEncoding.EncodeToString(b)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	_ = json.NewEncoder(w).Encode(map[string]any{"items": items, "totalItems": len(matched), "pageInfo": pageInfo})
}

func writeError(w http.ResponseWriter, r *http.Request, status int, name, msg string) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"error":    map[string]any{"name": name, "message": msg},
		"request":  map[string]any{"method": r.Method, "url": r.URL.RequestURI()},
		"response": map[string]any{"statusCode": status},
	})
}

func refOf(e map[string]any) string {
	md, _ := e["metadata"].(map[string]any)
	ns, _ := md["namespace"].(string)
	if ns == "" {
		ns = "default"
	}
	kind, _ := e["kind"].(string)
	name, _ := md["name"].(string)
	return strings.ToLower(kind + ":" + ns + "/" + name)
}

// matches applies the filter strings: any of them, each "all of" its comma-separated statements.
// No filter matches everything.
func matches(e map[string]any, filters []string) bool {
	if len(filters) == 0 {
		return true
	}
	flat := map[string][]string{}
	flatten("", e, flat)
	for _, f := range filters {
		all := true
		for stmt := range strings.SplitSeq(f, ",") {
			stmt = strings.TrimSpace(stmt)
			if stmt == "" {
				continue
			}
			key, value, hasValue := strings.Cut(stmt, "=")
			vals, ok := flat[strings.ToLower(strings.TrimSpace(key))]
			if !ok || (hasValue && !slices.Contains(vals, strings.ToLower(strings.TrimSpace(value)))) {
				all = false
				break
			}
		}
		if all {
			return true
		}
	}
	return false
}

// flatten maps "a.b.c" (lower case) to the lower-cased scalar values found there, as the catalog's
// search table does; keys holding dots (annotation keys) simply become part of the path.
func flatten(prefix string, v any, out map[string][]string) {
	switch v := v.(type) {
	case map[string]any:
		for k, child := range v {
			p := strings.ToLower(k)
			if prefix != "" {
				p = prefix + "." + p
			}
			flatten(p, child, out)
		}
	case []any:
		for _, child := range v {
			flatten(prefix, child, out)
		}
	default:
		out[prefix] = append(out[prefix], strings.ToLower(fmt.Sprint(v)))
	}
}

// project keeps only the requested fields. Like the catalog, a field path is split on dots and
// parts are joined greedily until they name an existing key, so "metadata.annotations" works and
// annotation keys with dots survive.
func project(e map[string]any, fieldsParams []string) map[string]any {
	var fields []string
	for _, p := range fieldsParams {
		for f := range strings.SplitSeq(p, ",") {
			if f = strings.TrimSpace(f); f != "" {
				fields = append(fields, f)
			}
		}
	}
	if len(fields) == 0 {
		return e
	}
	out := map[string]any{}
	for _, f := range fields {
		src, dst := e, out
		parts := strings.Split(f, ".")
		key := ""
		for i, part := range parts {
			if key != "" {
				key += "."
			}
			key += part
			v, ok := src[key]
			if !ok {
				continue
			}
			if i == len(parts)-1 {
				dst[key] = v
				break
			}
			child, isMap := v.(map[string]any)
			if !isMap {
				break
			}
			next, _ := dst[key].(map[string]any)
			if next == nil {
				next = map[string]any{}
				dst[key] = next
			}
			src, dst, key = child, next, ""
		}
	}
	return out
}
