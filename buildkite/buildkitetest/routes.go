package buildkitetest

import (
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
)

// serveRoute answers an authenticated, counted, in-scope request.
func (f *Fake) serveRoute(r *http.Request, rt route, resp *response, tok *token) {
	q := r.URL.Query()
	switch rt.template {
	case RouteAccessToken:
		resp.json(http.StatusOK, renderToken(tok))
	case RouteBuilds, RouteOrgBuilds, RoutePipelineBuilds:
		f.listBuilds(r, rt, q, resp)
	case RouteBuild:
		f.getBuild(rt, q, resp)
	case RouteRebuild:
		f.rebuild(rt, resp)
	case RouteAnnotations:
		f.listAnnotations(r, rt, q, resp)
	case RoutePipelines:
		f.listPipelines(r, rt, q, resp)
	case RoutePipeline:
		f.mu.RLock()
		defer f.mu.RUnlock()
		pp, msg := f.lookup(rt)
		if pp == nil {
			resp.message(http.StatusNotFound, msg)
			return
		}
		resp.json(http.StatusOK, renderPipeline(pp, f.cfg.legacyPipelineTimes))
	}
}

// lookup finds the route's organization (and pipeline, when the route has one) under f.mu; on
// failure it returns the 404 message.
func (f *Fake) lookup(rt route) (*pipe, string) {
	o, ok := f.orgs[rt.org]
	if !ok {
		return nil, msgNoOrg
	}
	if rt.pipeline == "" {
		return &pipe{org: o}, ""
	}
	pp, ok := o.pipelines[rt.pipeline]
	if !ok {
		return nil, msgNoPipeline
	}
	return pp, ""
}

// indexes returns the indexes a build listing reads, under f.mu.
func (f *Fake) indexes(rt route) []*index {
	switch rt.template {
	case RouteBuilds:
		out := make([]*index, 0, len(f.order))
		for _, slug := range f.order {
			out = append(out, &f.orgs[slug].idx)
		}
		return out
	case RouteOrgBuilds:
		if o, ok := f.orgs[rt.org]; ok {
			return []*index{&o.idx}
		}
	case RoutePipelineBuilds:
		if pp, msg := f.lookup(rt); msg == "" {
			return []*index{&pp.idx}
		}
	}
	return nil
}

// rlockClean takes f.mu for reading once the indexes rt reads are sorted; the caller unlocks.
func (f *Fake) rlockClean(rt route) {
	for {
		f.mu.RLock()
		dirty := false
		for _, ix := range f.indexes(rt) {
			dirty = dirty || ix.dirty()
		}
		if !dirty {
			return
		}
		f.mu.RUnlock()
		f.mu.Lock()
		for _, ix := range f.indexes(rt) {
			ix.fix()
		}
		f.mu.Unlock()
	}
}

func (f *Fake) listBuilds(r *http.Request, rt route, q url.Values, resp *response) {
	f.rlockClean(rt)
	defer f.mu.RUnlock()
	if rt.template != RouteBuilds {
		if _, msg := f.lookup(rt); msg != "" {
			resp.message(http.StatusNotFound, msg)
			return
		}
	}
	fq := q
	if len(f.cfg.ignoredFilters) > 0 {
		fq = url.Values{}
		for k, v := range q {
			fq[k] = v
		}
		for _, p := range f.cfg.ignoredFilters {
			delete(fq, p)
			delete(fq, p+"[]")
		}
	}
	filter, err := parseBuildFilter(fq)
	if err != nil {
		resp.message(http.StatusBadRequest, err.Error())
		return
	}
	p := parsePage(q)
	if f.cfg.deepPageLimit > 0 && p.number > f.cfg.deepPageLimit {
		resp.message(http.StatusBadRequest, msgTooDeep)
		return
	}
	var recs []*buildRec
	var total int
	if ixs := f.indexes(rt); len(ixs) == 1 {
		recs, total = ixs[0].query(filter, p)
	} else {
		var all []*buildRec
		for _, ix := range ixs {
			part, _ := ix.query(filter, page{number: 1, perPage: math.MaxInt})
			all = append(all, part...)
		}
		sortNewestFirst(all)
		recs, total = cut(all, p), len(all)
	}
	o := buildOpts{
		excludeJobs:     boolParam(q, "exclude_jobs"),
		excludePipeline: boolParam(q, "exclude_pipeline"),
		includeRetried:  boolParam(q, "include_retried_jobs"),
		legacyPipelines: f.cfg.legacyPipelineTimes,
	}
	out := make([]*buildJSON, 0, len(recs))
	for _, rec := range recs {
		out = append(out, renderBuild(rec, o))
	}
	resp.json(http.StatusOK, out)
	setLink(resp.header, r, p, total)
}

// lookupBuild finds the build rt names, or answers 404 as Buildkite does for a missing
// organization, pipeline or build and returns nil. The caller holds f.mu.
func (f *Fake) lookupBuild(rt route, resp *response) *buildRec {
	pp, msg := f.lookup(rt)
	if pp == nil {
		resp.message(http.StatusNotFound, msg)
		return nil
	}
	n, err := strconv.Atoi(rt.num)
	rec, ok := pp.byNum[n]
	if err != nil || !ok {
		resp.message(http.StatusNotFound, msgNoBuild)
		return nil
	}
	return rec
}

func (f *Fake) getBuild(rt route, q url.Values, resp *response) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	rec := f.lookupBuild(rt, resp)
	if rec == nil {
		return
	}
	o := buildOpts{
		excludeJobs:     boolParam(q, "exclude_jobs"),
		excludePipeline: boolParam(q, "exclude_pipeline"),
		includeRetried:  boolParam(q, "include_retried_jobs"),
		stateCounts:     true,
		legacyPipelines: f.cfg.legacyPipelineTimes,
	}
	if js := params(q, "job_states"); len(js) > 0 {
		o.jobStates = map[string]bool{}
		for _, s := range js {
			o.jobStates[s] = true
		}
	}
	resp.json(http.StatusOK, renderBuild(rec, o))
}

func (f *Fake) listPipelines(r *http.Request, rt route, q url.Values, resp *response) {
	f.mu.RLock()
	defer f.mu.RUnlock()
	o, ok := f.orgs[rt.org]
	if !ok {
		resp.message(http.StatusNotFound, msgNoOrg)
		return
	}
	name := strings.ToLower(q.Get("name"))
	repo := q.Get("repository")
	var match []*pipe
	for _, slug := range o.slugs {
		pp := o.pipelines[slug]
		if name != "" && !strings.Contains(strings.ToLower(pp.p.Name), name) {
			continue
		}
		if repo != "" && !strings.Contains(pp.p.Repository, repo) {
			continue
		}
		match = append(match, pp)
	}
	p := parsePage(q)
	out := make([]*pipelineJSON, 0, p.perPage)
	for _, pp := range cut(match, p) {
		out = append(out, renderPipeline(pp, f.cfg.legacyPipelineTimes))
	}
	resp.json(http.StatusOK, out)
	setLink(resp.header, r, p, len(match))
}

// setLink writes the RFC 5988 Link header (reference §3.1): absolute URLs on the request's own
// scheme and host, carrying the request's query unchanged but for page.
func setLink(h http.Header, r *http.Request, p page, total int) {
	last := max(1, (total+p.perPage-1)/p.perPage)
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	var kept []string
	for _, part := range strings.Split(r.URL.RawQuery, "&") {
		k, _, _ := strings.Cut(part, "=")
		if uk, err := url.QueryUnescape(k); part == "" || (err == nil && uk == "page") {
			continue
		}
		kept = append(kept, part)
	}
	base := scheme + "://" + r.Host + r.URL.EscapedPath() + "?"
	if len(kept) > 0 {
		base += strings.Join(kept, "&") + "&"
	}
	var links []string
	add := func(n int, rel string) {
		links = append(links, "<"+base+"page="+strconv.Itoa(n)+`>; rel="`+rel+`"`)
	}
	if p.number < last {
		add(p.number+1, "next")
	}
	if p.number > 1 {
		add(min(p.number-1, last), "prev")
		add(1, "first")
	}
	if p.number < last {
		add(last, "last")
	}
	if len(links) > 0 {
		h.Set("Link", strings.Join(links, ", "))
	}
}

// rebuild creates a new build of the same commit, branch, message and environment as the given
// one and answers it (reference §7): scheduled, numbered next, rebuilt_from naming the original.
// Meta-data is not copied: the new build's steps set their own. (The fake's pipelines all
// allow rebuilds.)
func (f *Fake) rebuild(rt route, resp *response) {
	f.mu.Lock()
	defer f.mu.Unlock()
	rec := f.lookupBuild(rt, resp)
	if rec == nil {
		return
	}
	orig := rec.view()
	nb := buildkite.Build{
		Commit: orig.Commit, Branch: orig.Branch, Message: orig.Message, Tag: orig.Tag, Source: "api",
		RebuiltFrom: &buildkite.BuildRef{ID: orig.ID, Number: orig.Number, URL: orig.URL},
	}
	created := f.addBuildLocked(rt.org, rt.pipeline, nb)
	resp.json(http.StatusOK, renderBuild(created, buildOpts{legacyPipelines: f.cfg.legacyPipelineTimes}))
}
