package backstage

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
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
	// maxPageBytes caps one response body, which is decoded as it streams in: 200 projected
	// entities are far below it, and only one entity at a time is held in memory.
	maxPageBytes = 16 << 20
	// maxErrorBodyBytes caps what is read of a non-200 answer (for its error message).
	maxErrorBodyBytes = 64 << 10
	// maxPages stops a catalog that keeps answering with new cursors (a broken proxy, a hostile
	// server); maxEntities (shared with the file source) caps the entities of one refresh. Either
	// fails the refresh, so the last good catalog is kept.
	maxPages = 1000
	// maxCursorBytes caps one cursor; the catalog's are a few hundred bytes of base64 JSON.
	maxCursorBytes = 16 << 10
	// maxRedirects is how many same-origin redirects one request follows.
	maxRedirects = 3
	// apiRequestTimeout bounds each request, body included, whatever the http.Client says.
	apiRequestTimeout = 30 * time.Second
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
//
// The server is not trusted: a redirect is followed only to the same scheme, host and port (at
// most maxRedirects times), so the token never goes anywhere else; each request has a deadline;
// each body is decoded as it streams, up to maxPageBytes; a cursor seen before, more than maxPages
// pages or more than maxEntities entities fail the load; and no error, problem or component
// carries the token (a server echoing it into a field or a message gets it replaced by
// "<secret>"; decode errors never quote the body).
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
// "Authorization: Bearer". client may be nil; the source uses a copy of it with its own redirect
// policy, and bounds each request to 30 s.
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
	c := &http.Client{}
	if client != nil {
		*c = *client
	}
	c.CheckRedirect = checkRedirect
	return &APISource{display: u.String(), token: token, client: c, logger: logger,
		endpoint: u.String() + "/entities/by-query"}, nil
}

func (s *APISource) String() string { return "backstage " + s.display }

// redirectError is a redirect the source refuses to follow.
type redirectError struct{ msg string }

func (e *redirectError) Error() string { return e.msg }

// checkRedirect follows a redirect only to the origin (scheme, host and port) of the first
// request, where the Authorization header may go, and only a few times.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) > maxRedirects {
		return &redirectError{fmt.Sprintf("the Backstage catalog API redirected more than %d times; set --catalog.backstage-url to the final URL", maxRedirects)}
	}
	from, to := via[0].URL, req.URL
	if !sameOrigin(from, to) {
		// Only scheme and host:port are named: the rest of the target is the server's to choose,
		// and userinfo in it is somebody's password.
		return &redirectError{fmt.Sprintf("the Backstage catalog API redirected to %s://%s, another scheme, host or port than %s://%s; the token is not sent there, so the redirect was not followed. If that is the right address, set --catalog.backstage-url to it",
			to.Scheme, to.Host, from.Scheme, from.Host)}
	}
	return nil
}

func sameOrigin(a, b *url.URL) bool {
	return strings.EqualFold(a.Scheme, b.Scheme) && strings.EqualFold(a.Hostname(), b.Hostname()) && port(a) == port(b)
}

func port(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	if strings.EqualFold(u.Scheme, "https") {
		return "443"
	}
	return "80"
}

// Load reads every page. Any failure (network, non-200, undecodable body, a cap) fails the whole
// Load, so that a half-read catalog never replaces a complete one.
func (s *APISource) Load(ctx context.Context) (Result, error) {
	fail := func(err error) (Result, error) {
		err = errors.New(s.scrub(err.Error()))
		return Result{Problems: []Problem{newProblem(ReasonBackstageAPI, s.display, "", "%s", err.Error())}}, err
	}
	q := url.Values{}
	for _, k := range Annotations {
		q.Add("filter", "metadata.annotations."+k)
	}
	q.Set("limit", fmt.Sprint(apiPageSize))
	q.Set("fields", apiFields)
	var res Result
	entities := 0
	seen := map[[sha256.Size]byte]bool{} // hashes, so that long cursors cost nothing to keep
	for page := 1; ; page++ {
		if page > maxPages {
			return fail(fmt.Errorf("the catalog API returned more than %d pages (%d entities); stopping (is a proxy rewriting the cursor?)", maxPages, entities))
		}
		next, n, err := s.page(ctx, q, page, func(e *rawEntity, item int) error {
			if entities++; entities > maxEntities {
				return fmt.Errorf("the catalog API returned more than %d annotated entities; stopping (is a proxy rewriting the cursor?)", maxEntities)
			}
			if e != nil && s.token != "" {
				e.scrub(s.token.Reveal())
			}
			if e == nil {
				res.Problems = append(res.Problems, newProblem(ReasonInvalidEntity, s.display, "", "item %d of page %d is not an entity", item, page))
				return nil
			}
			o := toComponent(e, s.display, s.display)
			switch {
			case o.component != nil:
				res.Components = append(res.Components, *o.component)
			case o.problem != nil:
				res.Problems = append(res.Problems, *o.problem)
			case o.ignored != nil:
				res.Ignored = append(res.Ignored, *o.ignored)
			}
			return nil
		})
		if err != nil {
			return fail(err)
		}
		if next == "" || n == 0 {
			break
		}
		if len(next) > maxCursorBytes {
			return fail(fmt.Errorf("the catalog API returned a cursor of %d KiB on page %d; no catalog cursor is that long, stopping", len(next)>>10, page))
		}
		h := sha256.Sum256([]byte(next))
		if seen[h] {
			return fail(fmt.Errorf("the catalog API returned a cursor on page %d that it had returned before; stopping to avoid a loop", page))
		}
		seen[h] = true
		q = url.Values{"cursor": {next}, "limit": {fmt.Sprint(apiPageSize)}, "fields": {apiFields}}
	}
	level.Debug(s.logger).Log("msg", "Read Backstage catalog", "url", s.display, "components", len(res.Components), "problems", len(res.Problems))
	return res, nil
}

// page fetches one page and calls item for each of its items, as they are decoded (nil for an
// item that is not an entity). It returns the next cursor and the number of items.
func (s *APISource) page(ctx context.Context, q url.Values, page int, item func(*rawEntity, int) error) (string, int, error) {
	ctx, cancel := context.WithTimeout(ctx, apiRequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.endpoint+"?"+q.Encode(), nil)
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", version.ComponentUserAgent("buildkite_deployments_exporter"))
	if s.token != "" {
		req.Header.Set("Authorization", "Bearer "+s.token.Reveal())
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var rerr *redirectError
		if errors.As(err, &rerr) {
			return "", 0, rerr
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // url.Error repeats the full URL with its query; the display URL is enough
		}
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() != nil {
			return "", 0, fmt.Errorf("the Backstage catalog API did not answer page %d in time (%v)", page, err)
		}
		return "", 0, fmt.Errorf("cannot reach the Backstage catalog API: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBodyBytes))
		if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden {
			advice := "set --catalog.backstage-token-file or BACKSTAGE_TOKEN to a Backstage static token (backend.auth.externalAccess)"
			if s.token != "" {
				advice = "the configured token was refused; check it is listed in backend.auth.externalAccess and may read the catalog"
			}
			return "", 0, fmt.Errorf("the Backstage catalog API answered %s%s; %s", resp.Status, s.errorMessage(body), advice)
		}
		return "", 0, fmt.Errorf("the Backstage catalog API answered %s%s", resp.Status, s.errorMessage(body))
	}
	next, n, err := decodePage(&squeezeSpace{r: &cappedReader{r: resp.Body, n: maxPageBytes}}, item)
	var stop *stopError
	switch {
	case errors.As(err, &stop):
		return "", 0, stop.err
	case errors.Is(err, errPageTooLarge):
		return "", 0, fmt.Errorf("page %d of the Backstage catalog API is larger than %d MiB; stopping", page, maxPageBytes>>20)
	case err != nil && ctx.Err() != nil:
		return "", 0, fmt.Errorf("reading page %d of the Backstage catalog API: %w", page, ctx.Err())
	case err != nil:
		return "", 0, fmt.Errorf("the Backstage catalog API answered page %d with a body that is not a by-query response (%s); is --catalog.backstage-url the backend's URL?", page, decodeError(err))
	}
	return next, n, nil
}

var errPageTooLarge = errors.New("page too large")

// stopError is the item callback's error (a cap), passed through decodePage as it is.
type stopError struct{ err error }

func (e *stopError) Error() string { return e.err.Error() }

// cappedReader reads at most n bytes of r and fails with errPageTooLarge when r has more.
type cappedReader struct {
	r io.Reader
	n int64
}

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.n <= 0 {
		var one [1]byte
		if n, _ := io.ReadFull(c.r, one[:]); n > 0 {
			return 0, errPageTooLarge
		}
		return 0, io.EOF
	}
	if int64(len(p)) > c.n {
		p = p[:c.n]
	}
	n, err := c.r.Read(p)
	c.n -= int64(n)
	return n, err
}

// squeezeSpace turns each run of JSON white space outside strings into one space. encoding/json's
// Decoder rescans the white space between tokens each time it refills its buffer, so megabytes of
// it (a hostile body) cost quadratic time; squeezed, they cost one pass.
type squeezeSpace struct {
	r                        io.Reader
	buf                      []byte
	inString, escaped, space bool
}

func (s *squeezeSpace) Read(p []byte) (int, error) {
	if len(s.buf) < len(p) {
		s.buf = make([]byte, len(p))
	}
	for {
		n, err := s.r.Read(s.buf[:len(p)])
		out := 0
		for _, c := range s.buf[:n] {
			switch {
			case s.inString:
				switch {
				case s.escaped:
					s.escaped = false
				case c == '\\':
					s.escaped = true
				case c == '"':
					s.inString = false
				}
			case c == ' ' || c == '\t' || c == '\n' || c == '\r':
				if !s.space {
					s.space = true
					p[out] = ' '
					out++
				}
				continue
			case c == '"':
				s.inString = true
			}
			s.space = false
			p[out] = c
			out++
		}
		if out > 0 || err != nil {
			return out, err
		}
	}
}

// decodePage decodes a by-query body, {"items":[...],"totalItems":N,"pageInfo":{"nextCursor":"..."}},
// one item at a time, so that memory holds one entity, not the page.
func decodePage(r io.Reader, item func(*rawEntity, int) error) (next string, n int, err error) {
	dec := json.NewDecoder(r)
	if err := expectDelim(dec, '{', "the body"); err != nil {
		return "", 0, err
	}
	sawItems := false
	for dec.More() {
		t, err := dec.Token()
		if err != nil {
			return "", 0, err
		}
		switch key, _ := t.(string); key {
		case "items":
			sawItems = true
			if err := expectDelim(dec, '[', "items"); err != nil {
				return "", 0, err
			}
			for dec.More() {
				n++
				var e rawEntity
				err := dec.Decode(&e)
				var terr *json.UnmarshalTypeError
				switch {
				case errors.As(err, &terr):
					// The item was read whole; only its shape is wrong. The decoder is still in
					// step, so this item is a problem and the page goes on.
					err = item(nil, n)
				case err != nil:
					return "", 0, err
				default:
					err = item(&e, n)
				}
				if err != nil {
					return "", 0, &stopError{err}
				}
			}
			if err := expectDelim(dec, ']', "items"); err != nil {
				return "", 0, err
			}
		case "pageInfo":
			var pi struct {
				NextCursor string `json:"nextCursor"`
			}
			if err := dec.Decode(&pi); err != nil {
				return "", 0, fmt.Errorf("pageInfo: %w", err)
			}
			next = pi.NextCursor
		default:
			var skip json.RawMessage
			if err := dec.Decode(&skip); err != nil {
				return "", 0, err
			}
		}
	}
	if err := expectDelim(dec, '}', "the body"); err != nil {
		return "", 0, err
	}
	// Every by-query answer has "items", even an empty catalog's: an object without it ({} from a
	// proxy, or "Items" in another case) is not the catalog API, and taking it for an empty
	// page would drop every component without a word.
	if !sawItems {
		return "", 0, &formatError{`the body: no "items" array (not a catalog by-query response)`}
	}
	// One JSON object is the whole body: anything after it (a second value, a proxy's trailer)
	// means the body is not what the catalog API sends.
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return "", 0, &formatError{"the body: unexpected data after the object"}
	}
	return next, n, nil
}

func expectDelim(dec *json.Decoder, want json.Delim, what string) error {
	t, err := dec.Token()
	if err != nil {
		return err
	}
	if d, ok := t.(json.Delim); !ok || d != want {
		return &formatError{fmt.Sprintf("%s: expected '%s', found a %s", what, want, tokenKind(t))}
	}
	return nil
}

// tokenKind names a JSON token's type, never its value.
func tokenKind(t json.Token) string {
	switch t.(type) {
	case json.Delim:
		return "bracket"
	case string:
		return "string"
	case float64, json.Number:
		return "number"
	case bool:
		return "boolean"
	case nil:
		return "null"
	}
	return "value"
}

// decodeError describes a decode error without quoting the body: a hostile or confused server
// may have put anything there, the token included.
func decodeError(err error) string {
	var (
		serr *json.SyntaxError
		terr *json.UnmarshalTypeError
	)
	switch {
	case errors.As(err, &serr):
		return fmt.Sprintf("invalid JSON at byte %d", serr.Offset)
	case errors.As(err, &terr):
		what, _, _ := strings.Cut(terr.Value, " ") // "number 12" -> "number"
		if terr.Field != "" {                      // a path of our struct's fields, never a key from the body
			return fmt.Sprintf("%s is a JSON %s", terr.Field, what)
		}
		return fmt.Sprintf("a JSON %s where another type belongs", what)
	case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return "the body ends early"
	}
	var fe *formatError
	if errors.As(err, &fe) {
		return fe.Error()
	}
	return "undecodable"
}

// formatError is a body of the wrong structure, described without its values.
type formatError struct{ msg string }

func (e *formatError) Error() string { return e.msg }

// errorMessage extracts Backstage's {"error":{"name","message"}} body, briefly, for the log. The
// token is replaced before the message is shortened, so that no part of it survives.
func (s *APISource) errorMessage(body []byte) string {
	var e struct {
		Error struct {
			Name    string `json:"name"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) != nil || e.Error.Message == "" {
		return ""
	}
	return fmt.Sprintf(" (%s: %s)", clip(s.scrub(e.Error.Name), 50), clip(s.scrub(e.Error.Message), 200))
}

const redacted = "<secret>"

// scrub replaces the token in text that came from the server.
func (s *APISource) scrub(text string) string {
	if s.token == "" {
		return text
	}
	return strings.ReplaceAll(text, s.token.Reveal(), redacted)
}

// scrub replaces tok in every string of the entity, keys included, before anything of it is kept
// or quoted: a server that echoes the Authorization header into an entity must not get the token
// into a label, a problem or the log.
func (e *rawEntity) scrub(tok string) {
	e.APIVersion = scrubAny(e.APIVersion, tok)
	e.Kind = scrubAny(e.Kind, tok)
	e.Metadata.Name = scrubAny(e.Metadata.Name, tok)
	e.Metadata.Namespace = scrubAny(e.Metadata.Namespace, tok)
	e.Metadata.Tags = scrubAny(e.Metadata.Tags, tok)
	if e.Metadata.Annotations != nil {
		e.Metadata.Annotations = scrubAny(e.Metadata.Annotations, tok).(map[string]any)
	}
	if e.Spec != nil {
		e.Spec = scrubAny(e.Spec, tok).(map[string]any)
	}
}

func scrubAny(v any, tok string) any {
	switch v := v.(type) {
	case string:
		return strings.ReplaceAll(v, tok, redacted)
	case []any:
		for i := range v {
			v[i] = scrubAny(v[i], tok)
		}
		return v
	case map[string]any:
		var renamed map[string]any // keys are renamed after the loop, which must not see them
		for k, child := range v {
			child = scrubAny(child, tok)
			if sk := strings.ReplaceAll(k, tok, redacted); sk != k {
				if renamed == nil {
					renamed = map[string]any{}
				}
				renamed[sk] = child
				delete(v, k)
				continue
			}
			v[k] = child
		}
		maps.Copy(v, renamed)
		return v
	}
	return v
}
