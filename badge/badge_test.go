package badge

import (
	"bytes"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/snapshot"
)

var now = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func fixture() *snapshot.Snapshot {
	return &snapshot.Snapshot{Taken: now, Components: []snapshot.Component{
		{Label: "api", Environments: []snapshot.Environment{
			{
				Name:         "production",
				LastFinished: [3]time.Time{now.Add(-2 * time.Hour), now.Add(-5 * time.Hour)},
				Deployed:     &snapshot.Deployed{Version: "v1.4.2", FinishedAt: now.Add(-2 * time.Hour)},
			},
			{
				// The latest deployment failed; its version tries to inject markup.
				Name:         "staging",
				LastFinished: [3]time.Time{now.Add(-3 * time.Hour), now.Add(-10 * time.Minute)},
				Failing:      true,
				Deployed:     &snapshot.Deployed{Version: "v1.4.2"},
				Deployments: []snapshot.PipelineDeployments{{Pipeline: "acme/api", Last: [3]snapshot.LastBuild{
					{Number: 7, FinishedAt: now.Add(-3 * time.Hour), Version: "v1.4.2"},
					{Number: 9, FinishedAt: now.Add(-10 * time.Minute), Version: `v2</text><script>&amp;"'`},
				}}},
			},
			{Name: "development", Running: 1, RunningSince: now.Add(-90 * time.Second)},
		}},
		{Label: "frontend/web", Environments: []snapshot.Environment{
			{Name: "production", Awaiting: 2, AwaitingSince: now.Add(-26 * time.Hour)},
			{Name: "qa"},
		}},
	}}
}

func serve(t *testing.T) *httptest.Server {
	t.Helper()
	s := fixture()
	srv := httptest.NewServer(NewHandler(func() *snapshot.Snapshot { return s }, Options{MaxAge: 30 * time.Second, Now: func() time.Time { return now }}))
	t.Cleanup(srv.Close)
	return srv
}

func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

// parsed is what an SVG 1.1 reader finds in a badge.
type parsed struct {
	root     xml.StartElement
	elements []string
	title    string
	texts    []string
	fills    []string
}

// parseSVG parses body strictly as XML and collects its elements and text.
func parseSVG(t *testing.T, body string) parsed {
	t.Helper()
	dec := xml.NewDecoder(strings.NewReader(body))
	dec.Strict = true
	var p parsed
	var stack []string
	for {
		tok, err := dec.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, body)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			if len(stack) == 0 {
				p.root = tok.Copy()
			}
			stack = append(stack, tok.Name.Local)
			p.elements = append(p.elements, tok.Name.Local)
			for _, a := range tok.Attr {
				if a.Name.Local == "fill" {
					p.fills = append(p.fills, a.Value)
				}
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			if len(stack) == 0 {
				continue
			}
			switch stack[len(stack)-1] {
			case "title":
				p.title += string(tok)
			case "text":
				p.texts = append(p.texts, string(tok))
			}
		}
	}
	return p
}

// svg11 are the elements a badge may have, all of SVG 1.1.
var svg11 = map[string]bool{"svg": true, "title": true, "linearGradient": true, "stop": true, "clipPath": true, "rect": true, "g": true, "text": true}

func TestBadges(t *testing.T) {
	srv := serve(t)
	for _, c := range []struct {
		path, label, message, colour string
	}{
		{"/badges/api/production.svg", "production", "passed · v1.4.2 · 2h ago", "#4c1"},
		{"/badges/api/staging.svg", "staging", `failed · v2</text><script>&amp;"' · 10m ago`, "#e05d44"},
		{"/badges/api/development.svg", "development", "running · 1m ago", "#007ec6"},
		{"/badges/frontend/web/production.svg", "production", "awaiting approval · 26h ago", "#dfb317"},
		{"/badges/frontend/web/qa.svg", "qa", "no deployments", "#9f9f9f"},
	} {
		t.Run(c.path, func(t *testing.T) {
			resp, body := get(t, srv, c.path)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %s", resp.StatusCode, body)
			}
			if ct := resp.Header.Get("Content-Type"); ct != "image/svg+xml; charset=utf-8" {
				t.Errorf("Content-Type %q", ct)
			}
			if cc := resp.Header.Get("Cache-Control"); cc != "max-age=30" {
				t.Errorf("Cache-Control %q, want the poll interval", cc)
			}
			p := parseSVG(t, body)
			if p.root.Name.Space != "http://www.w3.org/2000/svg" || p.root.Name.Local != "svg" {
				t.Errorf("root %v", p.root.Name)
			}
			var version string
			for _, a := range p.root.Attr {
				if a.Name.Local == "version" {
					version = a.Value
				}
			}
			if version != "1.1" {
				t.Errorf("svg version %q", version)
			}
			for _, e := range p.elements {
				if !svg11[e] {
					t.Errorf("element <%s> in the badge", e)
				}
			}
			if want := c.label + ": " + c.message; p.title != want {
				t.Errorf("title %q, want %q", p.title, want)
			}
			if diff := cmp.Diff([]string{c.label, c.label, c.message, c.message}, p.texts); diff != "" {
				t.Errorf("texts (-want +got):\n%s", diff)
			}
			found := false
			for _, f := range p.fills {
				found = found || f == c.colour
			}
			if !found {
				t.Errorf("no fill %s among %v", c.colour, p.fills)
			}
		})
	}
}

func TestBadgeErrors(t *testing.T) {
	srv := serve(t)
	for _, c := range []struct {
		path string
		code int
		want string
	}{
		{"/badges/nope/production.svg", 404, `Unknown component "nope"`},
		{"/badges/api/prod.svg", 404, `has no environment "prod"; it has: production, staging, development`},
		{"/badges/web/production.svg", 404, `Unknown component "web"`}, // namespaced: frontend/web only
		{"/badges/api/production.png", 404, "/badges/<component>/<environment>.svg"},
		{"/badges/api.svg", 404, "/badges/<component>/<environment>.svg"},
		{"/badges/" + strings.Repeat("a", MaxPathLength) + "/production.svg", 414, "longer than"},
	} {
		resp, body := get(t, srv, c.path)
		if resp.StatusCode != c.code || !strings.Contains(body, c.want) {
			t.Errorf("%s: %d %q, want %d with %q", c.path, resp.StatusCode, body, c.code, c.want)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("%s: Content-Type %q", c.path, ct)
		}
	}
	resp, err := http.Post(srv.URL+"/badges/api/production.svg", "text/plain", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %d", resp.StatusCode)
	}
}

// TestBadgeEscapesEverything: whatever a version or environment holds, the badge stays one
// well-formed document with only its own elements, and the text reads back as written.
func TestBadgeEscapesEverything(t *testing.T) {
	for _, v := range []string{"<", "&", "]]>", "<!--", `"'><svg onload=x>`, "\x00\x1b[31m", "a\xffb", strings.Repeat("é", 100)} {
		body := SVG(Badge{Label: "prod<&>", State: StateFailed, Version: v, Since: now}, now)
		p := parseSVG(t, string(body))
		for _, e := range p.elements {
			if !svg11[e] {
				t.Errorf("version %q: element <%s>", v, e)
			}
		}
		if !strings.HasPrefix(p.title, "prod<&>: failed · ") {
			t.Errorf("version %q: title %q", v, p.title)
		}
		if bytes.ContainsAny(body, "\x00\x1b") {
			t.Errorf("version %q: control characters in the body", v)
		}
	}
}

func TestAge(t *testing.T) {
	for d, want := range map[time.Duration]string{
		10 * time.Second: "just now", 5 * time.Minute: "5m ago", 2 * time.Hour: "2h ago", 47 * time.Hour: "47h ago", 72 * time.Hour: "3d ago",
	} {
		if got := Age(d); got != want {
			t.Errorf("Age(%s) = %q, want %q", d, got, want)
		}
	}
}

func newServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}
