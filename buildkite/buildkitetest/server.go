package buildkitetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Documented bodies (reference §3, §10).
const (
	msgUnauthorized = "Authentication required. Please supply a valid API Access Token: https://buildkite.com/docs/apis/rest-api#authentication"
	msgTooDeep      = "Listing builds this deep is not supported. Please narrow your query using filters such as branch or created_from."
	msgNotFound     = "Not Found"
	msgNoOrg        = "No organization found"
	msgNoPipeline   = "No pipeline found"
	msgNoBuild      = "No build found"
)

// response is what the fake answers, before it is written to a socket or handed back in-process.
type response struct {
	status   int
	header   http.Header
	body     []byte
	truncate bool          // send only the first half of body, then cut the connection
	trickle  time.Duration // send body one byte every trickle
}

func newResponse(now time.Time) *response {
	h := http.Header{}
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Access-Control-Expose-Headers", "Link")
	h.Set("Date", now.UTC().Format(http.TimeFormat))
	return &response{status: http.StatusOK, header: h}
}

func (r *response) json(status int, v any) {
	r.status = status
	r.body = mustJSON(v)
}

func (r *response) message(status int, msg string) {
	r.json(status, map[string]string{"message": msg})
}

// route is a matched path.
type route struct {
	template           string
	org, pipeline, num string
}

func matchRoute(path string) (route, bool) {
	p := strings.Trim(path, "/")
	seg := strings.Split(p, "/")
	if len(seg) < 2 || seg[0] != "v2" {
		return route{}, false
	}
	seg = seg[1:]
	switch {
	case len(seg) == 1 && seg[0] == "builds":
		return route{template: RouteBuilds}, true
	case len(seg) == 1 && seg[0] == "access-token":
		return route{template: RouteAccessToken}, true
	case len(seg) < 3 || seg[0] != "organizations" || seg[1] == "":
		return route{}, false
	}
	rt := route{org: seg[1]}
	switch rest := seg[2:]; {
	case len(rest) == 1 && rest[0] == "builds":
		rt.template = RouteOrgBuilds
	case len(rest) == 1 && rest[0] == "pipelines":
		rt.template = RoutePipelines
	case len(rest) == 2 && rest[0] == "pipelines":
		rt.template, rt.pipeline = RoutePipeline, rest[1]
	case len(rest) == 3 && rest[0] == "pipelines" && rest[2] == "builds":
		rt.template, rt.pipeline = RoutePipelineBuilds, rest[1]
	case len(rest) == 4 && rest[0] == "pipelines" && rest[2] == "builds":
		rt.template, rt.pipeline, rt.num = RouteBuild, rest[1], rest[3]
	case len(rest) == 5 && rest[0] == "pipelines" && rest[2] == "builds" && rest[4] == "annotations":
		rt.template, rt.pipeline, rt.num = RouteAnnotations, rest[1], rest[3]
	case len(rest) == 5 && rest[0] == "pipelines" && rest[2] == "builds" && rest[4] == "rebuild":
		rt.template, rt.pipeline, rt.num = RouteRebuild, rest[1], rest[3]
	default:
		return route{}, false
	}
	return rt, true
}

// requiredScope is the token scope a route needs (reference §2.1).
func requiredScope(template string) string {
	switch template {
	case RoutePipelines, RoutePipeline:
		return "read_pipelines"
	case RouteAccessToken:
		return ""
	case RouteRebuild:
		return "write_builds"
	}
	return "read_builds"
}

// routeMethod is the HTTP method a route answers: GET but for the rebuild's PUT.
func routeMethod(template string) string {
	if template == RouteRebuild {
		return http.MethodPut
	}
	return http.MethodGet
}

func bearer(r *http.Request) string {
	scheme, tok, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// handle answers one request. It returns an error only when the request's context ended during
// an injected delay.
func (f *Fake) handle(r *http.Request) (*response, error) {
	now := f.now()
	rt, matched := matchRoute(r.URL.Path)
	if r.Method != routeMethod(rt.template) {
		matched = false
	}
	entry := Request{Method: r.Method, Path: r.URL.Path, Route: rt.template, Query: r.URL.Query(), Time: now}
	if !matched {
		entry.Route = ""
	}
	resp, err := f.answer(r, rt, matched)
	if err == nil {
		entry.Status = resp.status
	}
	f.record(entry)
	return resp, err
}

func (f *Fake) answer(r *http.Request, rt route, matched bool) (*response, error) {
	if err := sleep(r.Context(), f.cfg.latency); err != nil {
		return nil, err
	}
	resp := newResponse(f.now())
	fl := f.takeFault(rt.template)
	if fl != nil {
		if err := sleep(r.Context(), fl.Delay); err != nil {
			return nil, err
		}
		switch {
		case fl.RateLimitStorm:
			f.storm(r, rt, fl, resp)
			return resp, nil
		case fl.Status != 0:
			faultStatus(resp, fl.Status)
			return resp, nil
		}
		resp.truncate = fl.Truncate
		resp.trickle = fl.Trickle
	}

	tok := f.token(bearer(r))
	if tok == nil {
		resp.message(http.StatusUnauthorized, msgUnauthorized)
		return resp, nil
	}
	if f.cfg.rateLimits {
		orgKey := ""
		if rt.org != "" && f.hasOrg(rt.org) {
			orgKey = rt.org
		}
		if !f.limits.take(resp, f.now(), bearer(r), orgKey, rt.template, f.cfg) {
			return resp, nil
		}
	}
	if !matched {
		resp.message(http.StatusNotFound, msgNotFound)
		return resp, nil
	}
	if s := requiredScope(rt.template); s != "" && !tok.has(s) {
		resp.message(http.StatusForbidden, "Your access token doesn't have the "+s+" scope")
		return resp, nil
	}
	f.serveRoute(r, rt, resp, tok)
	return resp, nil
}

// faultStatus answers an injected status as a proxy would: 5xx as an HTML page (clients must cope
// with bodies that are not JSON), others as a JSON message.
func faultStatus(resp *response, status int) {
	resp.status = status
	if status >= 500 {
		resp.header.Set("Content-Type", "text/html; charset=utf-8")
		text := fmt.Sprintf("%d %s", status, http.StatusText(status))
		resp.body = []byte("<html><head><title>" + text + "</title></head><body><h1>" + text + "</h1></body></html>\n")
		return
	}
	resp.message(status, http.StatusText(status))
}

func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (f *Fake) token(s string) *token {
	if s == "" {
		return nil
	}
	f.mu.RLock()
	defer f.mu.RUnlock()
	t, ok := f.tokens[s]
	if !ok {
		return nil
	}
	c := *t
	return &c
}

func (f *Fake) hasOrg(slug string) bool {
	f.mu.RLock()
	defer f.mu.RUnlock()
	_, ok := f.orgs[slug]
	return ok
}

// serveHTTP writes handle's answer to a real connection.
func (f *Fake) serveHTTP(w http.ResponseWriter, r *http.Request) {
	resp, err := f.handle(r)
	if err != nil {
		return // the client is gone
	}
	for k, v := range resp.header {
		w.Header()[k] = v
	}
	body := resp.body
	if resp.truncate {
		// Promise the whole body and send half: the server then closes the connection, which the
		// client sees as an unexpected EOF mid-JSON, as with a cut connection.
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		body = body[:len(body)/2]
	}
	if resp.trickle > 0 {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(resp.status)
		fl, _ := w.(http.Flusher)
		for i := range body {
			if _, err := w.Write(body[i : i+1]); err != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
			if sleep(r.Context(), resp.trickle) != nil {
				return // the client gave up
			}
		}
		return
	}
	w.WriteHeader(resp.status)
	_, _ = w.Write(body)
}

// transport serves InProcessBaseURL in the caller's goroutine.
type transport struct{ f *Fake }

func (t transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	if req.URL.Scheme != "http" || req.URL.Host != inProcessHost {
		return nil, fmt.Errorf("buildkitetest: the in-process transport serves only %s, not %s://%s", InProcessBaseURL, req.URL.Scheme, req.URL.Host)
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sreq := req.Clone(ctx)
	if sreq.Host == "" {
		sreq.Host = req.URL.Host
	}
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "192.0.2.1:1234"
	resp, err := t.f.handle(sreq)
	if err != nil {
		return nil, err
	}
	var body io.Reader = bytes.NewReader(resp.body)
	length := int64(len(resp.body))
	if resp.truncate {
		body = io.MultiReader(bytes.NewReader(resp.body[:len(resp.body)/2]), errReader{io.ErrUnexpectedEOF})
	}
	if resp.trickle > 0 {
		body = &trickleReader{ctx: ctx, r: body, every: resp.trickle}
	}
	return &http.Response{
		Status:        fmt.Sprintf("%d %s", resp.status, http.StatusText(resp.status)),
		StatusCode:    resp.status,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        resp.header,
		Body:          io.NopCloser(body),
		ContentLength: length,
		Request:       req,
	}, nil
}

// trickleReader hands out one byte of r every every, and fails with the context's error once
// ctx ends, as a real transport's body does when the request is canceled.
type trickleReader struct {
	ctx   context.Context
	r     io.Reader
	every time.Duration
	sent  bool
}

func (t *trickleReader) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if t.sent {
		if err := sleep(t.ctx, t.every); err != nil {
			return 0, err
		}
	}
	if err := t.ctx.Err(); err != nil {
		return 0, err
	}
	t.sent = true
	return t.r.Read(p[:1])
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
