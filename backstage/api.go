package backstage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/go-kit/log"
	"github.com/go-kit/log/level"
	"github.com/prometheus/common/version"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/secret"
)

const (
	// apiPageSize is the limit sent with each by-query request. The catalog's own default is 20;
	// larger pages mean fewer round trips, and the fields projection keeps each entity small.
	apiPageSize = 200
	// maxPageBytes caps one response body; 200 projected entities are far below it.
	maxPageBytes = 32 << 20
	// maxPages stops a catalog that keeps answering with a next cursor (a broken proxy, a loop).
	maxPages = 10000
	// defaultAPITimeout bounds one request when the caller passes no http.Client.
	defaultAPITimeout = 30 * time.Second
)

// apiFields are the entity fields the exporter reads; the catalog returns nothing else
// (`fields` projection of GET /entities/by-query, plugins/catalog-backend
// parseEntityTransformParams: comma-separated dotted paths).
var apiFields = strings.Join([]string{
	"apiVersion", "kind",
	"metadata.name", "metadata.namespace", "metadata.annotations", "metadata.tags",
	"spec.owner", "spec.system", "spec.lifecycle", "spec.type",
}, ",")

// APISource reads annotated entities from the Backstage catalog REST API.
//
// It calls GET <base>/api/catalog/entities/by-query with one `filter` per annotation key (filters
// given several times are OR'ed, a bare key means "the key exists"), so only entities carrying a
// Buildkite annotation are transferred, then follows pageInfo.nextCursor (a request with `cursor`
// carries no filter: the cursor encodes it). Shapes from backstage/backstage
// packages/catalog-client CatalogClient.queryEntities and plugins/catalog-backend createRouter.
type APISource struct {
	display  string // the catalog's base URL, ending in /api/catalog, for logs and problems
	token    secret.Secret
	client   *http.Client
	logger   log.Logger
	endpoint string
}

// NewAPISource returns a source for the Backstage backend at baseURL, e.g.
// "https://backstage.example.com" (the catalog is then at /api/catalog; a baseURL that already
// ends in /api/catalog is used as it is). token may be empty when the catalog allows anonymous
// reads; otherwise it is a Backstage static token (backend.auth.externalAccess) sent as
// "Authorization: Bearer". A nil client gets a 30 s timeout.
func NewAPISource(baseURL string, token secret.Secret, client *http.Client, logger log.Logger) (*APISource, error) {
	u, err := url.Parse(strings.TrimSpace(baseURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--catalog.backstage-url %q is not an http(s) URL; use the Backstage backend's base URL, e.g. https://backstage.example.com", baseURL)
	}
	if u.User != nil {
		return nil, errors.New("--catalog.backstage-url must not hold credentials; put the token in --catalog.backstage-token-file or BACKSTAGE_TOKEN")
	}
	u.RawQuery, u.Fragment = "", ""
	u.Path = strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(u.Path, "/api/catalog") {
		u.Path += "/api/catalog"
	}
	u.RawPath = ""
	if client == nil {
		client = &http.Client{Timeout: defaultAPITimeout}
	}
	return &APISource{display: u.String(), token: token, client: client, logger: logger,
		endpoint: u.String() + "/entities/by-query"}, nil
}

func (s *APISource) String() string { return "backstage " + s.display }

// queryResponse is the body of GET /entities/by-query.
type queryResponse struct {
	Items      []json.RawMessage `json:"items"`
	TotalItems int               `json:"totalItems"`
	PageInfo   struct {
		NextCursor string `json:"nextCursor"`
	} `json:"pageInfo"`
}

// Load reads every page. Any failure (network, non-200, undecodable body) fails the whole Load, so
// that a half-read catalog never replaces a complete one.
func (s *APISource) Load(ctx context.Context) (Result, error) {
	fail := func(err error) (Result, error) {
		return Result{Problems: []Problem{{Reason: ReasonBackstageAPI, Source: s.display, Message: err.Error()}}}, err
	}
	q := url.Values{}
	for _, k := range Annotations {
		q.Add("filter", "metadata.annotations."+k)
	}
	var res Result
	seen := map[string]bool{}
	for page := 0; ; page++ {
		if page == maxPages {
			return fail(fmt.Errorf("the catalog API returned more than %d pages; stopping (is a proxy rewriting the cursor?)", maxPages))
		}
		q.Set("limit", fmt.Sprint(apiPageSize))
		q.Set("fields", apiFields)
		body, err := s.get(ctx, q)
		if err != nil {
			return fail(err)
		}
		for i, raw := range body.Items {
			var e rawEntity
			if err := json.Unmarshal(raw, &e); err != nil {
				res.Problems = append(res.Problems, Problem{Reason: ReasonInvalidEntity, Source: s.display,
					Message: fmt.Sprintf("item %d of page %d is not an entity: %v", i, page+1, err)})
				continue
			}
			o := toComponent(&e, s.display, s.display)
			switch {
			case o.component != nil:
				res.Components = append(res.Components, *o.component)
			case o.problem != nil:
				res.Problems = append(res.Problems, *o.problem)
			case o.ignored != nil:
				res.Ignored = append(res.Ignored, *o.ignored)
			}
		}
		next := body.PageInfo.NextCursor
		if next == "" || len(body.Items) == 0 {
			break
		}
		if seen[next] {
			return fail(errors.New("the catalog API returned the same cursor twice; stopping to avoid a loop"))
		}
		seen[next] = true
		q = url.Values{"cursor": {next}}
	}
	level.Debug(s.logger).Log("msg", "Read Backstage catalog", "url", s.display, "components", len(res.Components), "problems", len(res.Problems))
	return res, nil
}

func (s *APISource) get(ctx context.Context, q url.Values) (*queryResponse, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.endpoint+"?"+q.Encode(), nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", version.ComponentUserAgent("buildkite_deployments_exporter"))
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token.Reveal())
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the full URL with its query; the display URL is enough
		}
		return nil, fmt.Errorf("cannot reach the Backstage catalog API: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxPageBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading the Backstage catalog API response: %w", err)
	}
	if len(body) > maxPageBytes {
		return nil, fmt.Errorf("a Backstage catalog API page is larger than %d MiB", maxPageBytes>>20)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		advice := "set --catalog.backstage-token-file or BACKSTAGE_TOKEN to a Backstage static token (backend.auth.externalAccess)"
		if s.token != "" {
			advice = "the configured token was refused; check it is listed in backend.auth.externalAccess and may read the catalog"
		}
		return nil, fmt.Errorf("the Backstage catalog API answered %s%s; %s", resp.Status, errorMessage(body), advice)
	case resp.StatusCode != http.StatusOK:
		return nil, fmt.Errorf("the Backstage catalog API answered %s%s", resp.Status, errorMessage(body))
	}
	var out queryResponse
	if err := json.Unmarshal(body, &out); err != nil {
		return nil, fmt.Errorf("the Backstage catalog API answered with a body that is not a by-query response (%v); is --catalog.backstage-url the backend's URL?", err)
	}
	return &out, nil
}

// errorMessage extracts Backstage's {"error":{"name","message"}} body, briefly, for the log.
func errorMessage(body []byte) string {
	var e struct {
		Error struct {
			Name    string `json:"name"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
		return ""
	}
	msg := e.Error.Message
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return fmt.Sprintf(" (%s: %s)", e.Error.Name, msg)
}
