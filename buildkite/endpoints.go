package buildkite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Route templates: the endpoint label of the self-metrics and the name errors use.
const (
	routeOrgBuilds      = "/v2/organizations/{org}/builds"
	routePipelineBuilds = "/v2/organizations/{org}/pipelines/{pipeline}/builds"
	routeBuild          = "/v2/organizations/{org}/pipelines/{pipeline}/builds/{number}"
	routePipelines      = "/v2/organizations/{org}/pipelines"
	routePipeline       = "/v2/organizations/{org}/pipelines/{pipeline}"
	routeAccessToken    = "/v2/access-token"
	routeRebuild        = "/v2/organizations/{org}/pipelines/{pipeline}/builds/{number}/rebuild"
)

// ListOrganizationBuilds lists the builds of every pipeline of org, newest created first,
// calling visit once per page in order. visit may return ErrStopPaging to stop early.
//
// Each page is held to the client's limits: at most opts.PerPage builds (the rest of a longer
// page is dropped), MaxMetaDataKeys meta-data keys and MaxJobsPerBuild jobs a build. A build
// outside the filters the request sent (finished_from, created_from, created_to, state[]) is
// dropped, and a page of nothing else ends the listing with an error matching ErrFilterIgnored.
// Drops are counted in buildkite_exporter_api_dropped_total and logged once per page.
func (c *Client) ListOrganizationBuilds(ctx context.Context, org string, opts ListBuildsOptions, visit func(page []Build) error) error {
	return c.listBuilds(ctx, org, "", opts, func(p buildPage) error { return visit(p.builds) })
}

// ListPipelineBuilds lists the builds of one pipeline, newest created first, calling visit
// once per page in order, with the limits and checks of ListOrganizationBuilds. visit may return
// ErrStopPaging to stop early.
func (c *Client) ListPipelineBuilds(ctx context.Context, org, pipeline string, opts ListBuildsOptions, visit func(page []Build) error) error {
	if err := checkSlugs(org, pipeline); err != nil {
		return err
	}
	return c.listBuilds(ctx, org, pipeline, opts, func(p buildPage) error { return visit(p.builds) })
}

// buildPage is one page of a build listing as the client keeps it.
type buildPage struct {
	builds   []Build // within the limits and the requested window
	received int     // builds decoded from the answer, within per_page, before the window check
}

// listBuilds lists org's builds (pipeline "" = the organization-wide endpoint).
func (c *Client) listBuilds(ctx context.Context, org, pipeline string, opts ListBuildsOptions, visit func(buildPage) error) error {
	if err := checkSlug("organization", org); err != nil {
		return err
	}
	var r request
	if pipeline == "" {
		r = c.newRequest(routeOrgBuilds, fmt.Sprintf("organization %q", org),
			"organizations/"+url.PathEscape(org)+"/builds", opts.encode())
	} else {
		r = c.newRequest(routePipelineBuilds, pipelineResource(org, pipeline),
			"organizations/"+url.PathEscape(org)+"/pipelines/"+url.PathEscape(pipeline)+"/builds", opts.encode())
	}
	limit, w := perPage(opts.PerPage), newWindow(opts)
	_, err := paginate(ctx, c, r, 0, func(body []byte, page int) error {
		d := drops{}
		builds, extra, err := decodeArray(body, limit, func(dec *json.Decoder, b *Build) error {
			var wb wireBuild
			if err := dec.Decode(&wb); err != nil {
				return err
			}
			*b = wb.build(d)
			return nil
		})
		if err != nil {
			return c.decodeError(r.endpoint, err)
		}
		d.add(dropBuilds, extra)
		kept := builds[:0:0]
		var filter, value string
		for i := range builds {
			if f, v := w.violation(&builds[i]); f != "" {
				if filter == "" {
					filter, value = f, v
				}
				continue
			}
			kept = append(kept, builds[i])
		}
		d.add(dropOutOfWindow, len(builds)-len(kept))
		c.recordDrops(r.endpoint, page, d)
		if len(builds) > 0 && len(kept) == 0 {
			return &FilterIgnoredError{Endpoint: r.endpoint, Page: page, Builds: len(builds), Filter: filter, Value: value}
		}
		return visit(buildPage{builds: kept, received: len(builds)})
	})
	return err
}

// buildPath is the API path of one build, after checking what goes into it.
func buildPath(org, pipeline string, number int) (string, error) {
	if err := checkSlugs(org, pipeline); err != nil {
		return "", err
	}
	if number <= 0 {
		return "", fmt.Errorf("buildkite: build number must be positive, got %d", number)
	}
	return "organizations/" + url.PathEscape(org) + "/pipelines/" + url.PathEscape(pipeline) + "/builds/" + strconv.Itoa(number), nil
}

// decodeBuild decodes a one-build answer of r, counting what the limits dropped.
func (c *Client) decodeBuild(r request, body []byte) (*Build, error) {
	var wb wireBuild
	if err := json.Unmarshal(body, &wb); err != nil {
		return nil, c.decodeError(r.endpoint, err)
	}
	d := drops{}
	b := wb.build(d)
	c.recordDrops(r.endpoint, 0, d)
	return &b, nil
}

// GetBuild fetches one build by its per-pipeline number.
func (c *Client) GetBuild(ctx context.Context, org, pipeline string, number int, opts GetBuildOptions) (*Build, error) {
	path, err := buildPath(org, pipeline, number)
	if err != nil {
		return nil, err
	}
	r := c.newRequest(routeBuild,
		fmt.Sprintf("build %s/%s#%d (or its organization or pipeline)", org, pipeline, number),
		path, opts.encode())
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	return c.decodeBuild(r, resp.body)
}

// RebuildBuild asks Buildkite to rebuild a build (PUT …/builds/{number}/rebuild, scope
// write_builds): a new build of the same commit, branch, message and environment, which it
// returns. It is sent once: retried only after a 429, never after an answer or a broken
// connection that might mean Buildkite already started the rebuild.
func (c *Client) RebuildBuild(ctx context.Context, org, pipeline string, number int) (*Build, error) {
	path, err := buildPath(org, pipeline, number)
	if err != nil {
		return nil, err
	}
	r := c.newRequest(routeRebuild,
		fmt.Sprintf("build %s/%s#%d (or its organization or pipeline)", org, pipeline, number),
		path+"/rebuild", "")
	r.method = http.MethodPut
	resp, err := c.do(ctx, r)
	if err != nil {
		return nil, err
	}
	return c.decodeBuild(r, resp.body)
}

// ListPipelines lists the pipelines of org, calling visit once per page (of at most 100
// pipelines; the rest of a longer page is dropped) in order. visit may return ErrStopPaging to
// stop early.
func (c *Client) ListPipelines(ctx context.Context, org string, visit func(page []Pipeline) error) error {
	if err := checkSlug("organization", org); err != nil {
		return err
	}
	r := c.newRequest(routePipelines, fmt.Sprintf("organization %q", org),
		"organizations/"+url.PathEscape(org)+"/pipelines", "per_page="+strconv.Itoa(MaxPerPage))
	_, err := paginate(ctx, c, r, 0, func(body []byte, page int) error {
		items, extra, err := decodeArray(body, MaxPerPage, func(dec *json.Decoder, p *Pipeline) error { return dec.Decode(p) })
		if err != nil {
			return c.decodeError(r.endpoint, err)
		}
		c.recordDrops(r.endpoint, page, drops{dropPipelines: extra})
		return visit(items)
	})
	return err
}

// GetPipeline fetches one pipeline.
func (c *Client) GetPipeline(ctx context.Context, org, slug string) (*Pipeline, error) {
	if err := checkSlugs(org, slug); err != nil {
		return nil, err
	}
	r := c.newRequest(routePipeline, pipelineResource(org, slug),
		"organizations/"+url.PathEscape(org)+"/pipelines/"+url.PathEscape(slug), "")
	var p Pipeline
	if err := c.getJSON(ctx, r, &p); err != nil {
		return nil, err
	}
	return &p, nil
}

// AccessToken describes the client's token: its scopes and expiry. It needs no scope.
func (c *Client) AccessToken(ctx context.Context) (*AccessToken, error) {
	r := c.newRequest(routeAccessToken, "the access token", "access-token", "")
	var t AccessToken
	if err := c.getJSON(ctx, r, &t); err != nil {
		return nil, err
	}
	return &t, nil
}

func pipelineResource(org, pipeline string) string {
	return fmt.Sprintf("organization %q or pipeline %q", org, org+"/"+pipeline)
}

func checkSlugs(org, pipeline string) error {
	if err := checkSlug("organization", org); err != nil {
		return err
	}
	return checkSlug("pipeline", pipeline)
}

// checkSlug rejects slugs that would change the request's path.
func checkSlug(what, s string) error {
	if s == "" {
		return fmt.Errorf("buildkite: %s slug is empty", what)
	}
	if strings.ContainsAny(s, "/?#") || s == "." || s == ".." || strings.TrimSpace(s) != s {
		return fmt.Errorf("buildkite: %s slug %q is not a slug (expected something like my-%s)", what, s, what)
	}
	return nil
}

func (c *Client) getJSON(ctx context.Context, r request, v any) error {
	resp, err := c.do(ctx, r)
	if err != nil {
		return err
	}
	return c.decode(r.endpoint, resp.body, v)
}

// paginate fetches r and every page its Link header's rel="next" points to, in order, handing
// each body to handle, which decodes and visits it. It does not compute page numbers: the API's
// links carry the original query, and following them is what the API documents. ErrStopPaging
// from handle ends the listing without error. maxPages > 0 stops after that many pages;
// truncated then reports that a next page was left unread.
func paginate(ctx context.Context, c *Client, r request, maxPages int, handle func(body []byte, page int) error) (truncated bool, err error) {
	seen := map[string]bool{}
	for page := 1; ; page++ {
		seen[r.url] = true
		resp, err := c.do(ctx, r)
		if err != nil {
			if page > 1 {
				return false, fmt.Errorf("page %d: %w", page, err)
			}
			return false, err
		}
		if err := handle(resp.body, page); err != nil {
			if errors.Is(err, ErrStopPaging) {
				return false, nil
			}
			var de *DecodeError
			if errors.As(err, &de) {
				return false, fmt.Errorf("page %d: %w", page, err)
			}
			return false, err
		}
		next, err := c.nextURL(r.url, resp.header.Values("Link"))
		if err != nil {
			return false, fmt.Errorf("GET %s: page %d: %w", r.endpoint, page, err)
		}
		if next == "" {
			return false, nil
		}
		if seen[next] {
			return false, fmt.Errorf("GET %s: page %d: the next-page link points back to a page already read; stopping", r.endpoint, page)
		}
		if maxPages > 0 && page >= maxPages {
			return true, nil
		}
		r.url = next
	}
}

// nextURL returns the absolute rel="next" URL of a Link header, "" when there is none. A link
// to another host or outside the base path is refused: the token would go with it.
func (c *Client) nextURL(current string, links []string) (string, error) {
	raw := findRel(links, "next")
	if raw == "" {
		return "", nil
	}
	cur, err := url.Parse(current)
	if err != nil {
		return "", err
	}
	ref, err := url.Parse(raw)
	if err != nil {
		// url.Parse quotes the link, which comes from the answer: scrubbed, shortened.
		return "", errors.New(shorten(c.scrub("the next-page link is not a URL: "+err.Error()), maxMessageLen))
	}
	next := cur.ResolveReference(ref)
	// ResolveReference removes literal dot segments, not encoded ones (%2e%2e), which a server
	// that normalises after decoding would follow out of the base path.
	dots := slices.ContainsFunc(strings.Split(next.Path, "/"), func(seg string) bool { return seg == "." || seg == ".." })
	if origin(next) != origin(c.base) || !strings.HasPrefix(next.Path, c.base.Path) || next.User != nil || dots {
		// Name the link's origin and path, never its query; scrubbed, since the answer wrote it.
		return "", errors.New(shorten(c.scrub(fmt.Sprintf("refusing to follow the next-page link to %s%s: it is not under the base URL %s",
			origin(next), next.EscapedPath(), c.base)), maxMessageLen))
	}
	return next.String(), nil
}

// findRel parses RFC 8288 Link header values, `<url>; rel="next", <url>; rel="last"`, and
// returns the URL of the first link whose rel includes want. URLs may contain commas, so the
// values are scanned for <...> rather than split on ",".
func findRel(values []string, want string) string {
	for _, v := range values {
		for {
			start := strings.IndexByte(v, '<')
			if start < 0 {
				break
			}
			end := strings.IndexByte(v[start:], '>')
			if end < 0 {
				break
			}
			target := v[start+1 : start+end]
			v = v[start+end+1:]
			params := v
			if i := strings.IndexByte(v, '<'); i >= 0 {
				params = v[:i]
			}
			params = strings.TrimRight(params, ", \t")
			for _, p := range strings.Split(params, ";") {
				name, val, ok := strings.Cut(strings.TrimSpace(p), "=")
				if !ok || !strings.EqualFold(strings.TrimSpace(name), "rel") {
					continue
				}
				val = strings.Trim(strings.TrimSpace(val), `"`)
				for _, rel := range strings.Fields(val) {
					if strings.EqualFold(rel, want) {
						return target
					}
				}
			}
		}
	}
	return ""
}
