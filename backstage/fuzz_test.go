package backstage_test

// Native fuzz targets for the two ways catalog data comes in from outside (catalog-info.yaml files
// and the catalog API) and for the annotation value parser they share. Seeds are under
// testdata/fuzz/<FuzzName>/; scripts/fuzz.sh (make fuzz) runs each target for a bounded time, and
// `go test` replays the seeds as ordinary tests.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/go-kit/log"
	"go.yaml.in/yaml/v3"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
)

// fuzzBudget bounds one input. The parsers are linear; a generous bound keeps a loaded CI machine
// from failing a run while still catching an input that makes a parser loop or blow up.
const fuzzBudget = 5 * time.Second

// FuzzCatalogFile reads one catalog-info.yaml through the exported FileSource, as
// --catalog.file does. Properties: no panic; bounded time; a readable file never fails the Load;
// no more components than YAML documents; every component and problem is well formed; the same
// bytes give the same result twice; Merge keeps every pipeline with one component.
func FuzzCatalogFile(f *testing.F) {
	f.Add([]byte("apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: shop\n  annotations:\n    buildkite.com/pipeline-slug: acme/shop-deploy\nspec:\n  owner: team-a\n"))
	// One directory per fuzzing process, holding nothing but the file: cheaper than a new one per
	// input, and a relative Location target or glob can only find the file itself.
	dir := f.TempDir()
	file := filepath.Join(dir, "catalog-info.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		if fuzzEscapesDir(data) {
			t.Skip("a Location target outside the temporary directory would walk the host's files")
		}
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		load := func() backstage.Result {
			ctx, cancel := context.WithTimeout(context.Background(), 2*fuzzBudget)
			defer cancel()
			start := time.Now()
			res, err := backstage.NewFileSource([]string{file}, log.NewNopLogger()).Load(ctx)
			if d := time.Since(start); d > fuzzBudget {
				t.Fatalf("Load took %v for %d bytes", d, len(data))
			}
			if err != nil {
				t.Fatalf("Load failed on a readable file: %v (problems %v)", err, res.Problems)
			}
			return res
		}
		res := load()
		if n := fuzzYamlDocuments(data); len(res.Components) > n {
			t.Errorf("%d components from %d YAML documents", len(res.Components), n)
		}
		fuzzCheckResult(t, res)
		if again := load(); !reflect.DeepEqual(res, again) {
			t.Errorf("the same file read twice gave different results:\n%+v\n%+v", res, again)
		}
		fuzzCheckMerged(t, backstage.Merge(res))
	})
}

// FuzzCatalogAPI serves the fuzz bytes as the body of GET /api/catalog/entities/by-query from an
// httptest server, with a fuzzed status, and loads it through the exported APISource.
// Properties: no panic; bounded time; a non-200 answer or a body that is not a JSON object fails
// the Load with one backstage_api problem; no more components than items; components and problems
// are well formed; the token appears in no error or problem.
func FuzzCatalogAPI(f *testing.F) {
	f.Add(uint16(200), []byte(`{"items":[],"totalItems":0,"pageInfo":{}}`))
	const token = "fuzz-backstage-token-7f3a"
	var (
		mu     sync.Mutex
		status int
		body   []byte
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		mu.Lock()
		s, b := status, body
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s)
		_, _ = w.Write(b)
	}))
	f.Cleanup(srv.Close)
	src, err := backstage.NewAPISource(srv.URL, token, srv.Client(), log.NewNopLogger())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, code uint16, data []byte) {
		// 200 to 599: what a catalog, or a proxy in front of it, can answer.
		c := 200 + int(code)%400
		mu.Lock()
		status, body = c, data
		mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*fuzzBudget)
		defer cancel()
		start := time.Now()
		res, err := src.Load(ctx)
		if d := time.Since(start); d > fuzzBudget {
			t.Fatalf("Load took %v for %d bytes", d, len(data))
		}
		var page struct {
			Items []json.RawMessage `json:"items"`
		}
		decodes := json.Unmarshal(data, &page) == nil
		switch {
		case c != http.StatusOK && err == nil:
			t.Fatalf("HTTP %d was accepted: %+v", c, res)
		case !decodes && err == nil:
			t.Fatalf("a body that is no by-query response was accepted: %+v", res)
		case err != nil:
			if len(res.Problems) != 1 || res.Problems[0].Reason != backstage.ReasonBackstageAPI || len(res.Components) != 0 {
				t.Errorf("a failed Load must carry exactly one %s problem and no component, got %+v", backstage.ReasonBackstageAPI, res)
			}
			if !bytes.Contains(data, []byte(token)) && strings.Contains(err.Error(), token) {
				t.Errorf("the token leaked into the error: %v", err)
			}
		}
		// Every page is the same body, so a Load that succeeded read len(page.Items) per page;
		// a body with a next cursor stops on the second page (same cursor twice).
		if err == nil && len(res.Components) > len(page.Items) {
			t.Errorf("%d components from %d items", len(res.Components), len(page.Items))
		}
		fuzzCheckResult(t, res)
		for _, p := range res.Problems {
			if !bytes.Contains(data, []byte(token)) && strings.Contains(p.String(), token) {
				t.Errorf("the token leaked into a problem: %v", p)
			}
		}
		fuzzCheckMerged(t, backstage.Merge(res))
	})
}

// FuzzParsePipelineRefs parses annotation values. Properties: no panic; an accepted value yields
// at least one ref, each of which prints as "<org>/<pipeline>" and parses back to itself.
func FuzzParsePipelineRefs(f *testing.F) {
	for _, s := range []string{"acme/shop-deploy", "acme/a, acme/b", "https://buildkite.com/acme/shop", "Acme/Shop", "acme/", ",", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, value string) {
		refs, err := backstage.ParsePipelineRefs(value)
		if err != nil {
			if len(refs) != 0 {
				t.Errorf("error %v with refs %v", err, refs)
			}
			return
		}
		if len(refs) == 0 {
			t.Fatalf("%q accepted with no ref", value)
		}
		for _, r := range refs {
			fuzzCheckRef(t, r)
		}
	})
}

// fuzzEscapesDir reports whether a Location in data names a target that may lead out of the
// directory the file is in: absolute, through "..", or from the home directory. Those are skipped
// (the Location code is still fuzzed with relative targets, URLs and globs): a target of "/" would
// make the loader walk the whole machine. It decodes the way the loader does, and errs on the side
// of skipping: any document's spec.target(s), whatever its kind.
func fuzzEscapesDir(data []byte) bool {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc struct {
			Spec map[string]any `yaml:"spec"`
		}
		err := dec.Decode(&doc) // a type error still fills what it can, which is checked too
		var targets []any
		if t, ok := doc.Spec["target"]; ok {
			targets = append(targets, t)
		}
		if ts, ok := doc.Spec["targets"].([]any); ok {
			targets = append(targets, ts...)
		}
		for _, t := range targets {
			if s, ok := t.(string); ok && (filepath.IsAbs(s) || strings.Contains(s, "..") || strings.HasPrefix(s, "~")) {
				return true
			}
		}
		var terr *yaml.TypeError
		if err != nil && !errors.As(err, &terr) {
			return false // io.EOF or a syntax error: the loader stops here too
		}
	}
}

// fuzzYamlDocuments counts the documents the loader can read before the first syntax error.
func fuzzYamlDocuments(data []byte) int {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	n := 0
	for {
		var doc yaml.Node
		if err := dec.Decode(&doc); err != nil {
			return n // io.EOF, or a syntax error after which the loader reads nothing either
		}
		n++
	}
}

// fuzzCheckResult asserts what every Source promises about a Result.
func fuzzCheckResult(t *testing.T, res backstage.Result) {
	t.Helper()
	for _, c := range res.Components {
		fuzzCheckComponent(t, c)
	}
	for _, p := range append(slices.Clone(res.Problems), res.Ignored...) {
		if p.Reason == "" || p.Message == "" {
			t.Errorf("problem without reason or message: %+v", p)
		}
		if p.Reason != backstage.ReasonUnsupportedKind && !slices.Contains(backstage.Reasons, p.Reason) {
			t.Errorf("problem with a reason outside backstage.Reasons (no series would count it): %+v", p)
		}
	}
	for _, p := range res.Ignored {
		if p.Reason != backstage.ReasonUnsupportedKind {
			t.Errorf("ignored entity with reason %q", p.Reason)
		}
	}
}

// fuzzCheckComponent: the fields that become label values are valid UTF-8 (a label value that is not
// fails the whole scrape), the name is set, the label and ref derive from namespace and name, and
// the pipelines are valid, distinct and at least one.
func fuzzCheckComponent(t *testing.T, c backstage.Component) {
	t.Helper()
	for _, s := range append([]string{c.Name, c.Namespace, c.Label, c.Ref, c.Owner, c.System, c.Lifecycle, c.Type}, c.Tags...) {
		if !utf8.ValidString(s) {
			t.Errorf("component %q has a field that is not UTF-8: %q", c.Ref, s)
		}
	}
	if strings.TrimSpace(c.Name) == "" || c.Namespace == "" {
		t.Errorf("component without name or namespace: %+v", c)
	}
	if c.Label != backstage.ComponentLabel(c.Namespace, c.Name) || c.Ref != "component:"+c.Namespace+"/"+c.Name {
		t.Errorf("label %q or ref %q does not derive from namespace %q and name %q", c.Label, c.Ref, c.Namespace, c.Name)
	}
	if len(c.Pipelines) == 0 {
		t.Errorf("component %s links no pipeline", c.Ref)
	}
	for i, p := range c.Pipelines {
		fuzzCheckRef(t, p)
		if slices.Contains(c.Pipelines[:i], p) {
			t.Errorf("component %s lists pipeline %s twice", c.Ref, p)
		}
	}
}

func fuzzCheckRef(t *testing.T, r backstage.PipelineRef) {
	t.Helper()
	back, err := backstage.ParsePipelineRef(r.String())
	if err != nil || back != r {
		t.Errorf("ref %+v prints as %q, which parses to %+v, %v", r, r.String(), back, err)
	}
}

// fuzzCheckMerged: after Merge, each pipeline belongs to one component and no component is empty.
func fuzzCheckMerged(t *testing.T, m backstage.Result) {
	t.Helper()
	owner := map[backstage.PipelineRef]string{}
	for _, c := range m.Components {
		fuzzCheckComponent(t, c)
		for _, p := range c.Pipelines {
			if o, taken := owner[p]; taken {
				t.Errorf("after Merge pipeline %s belongs to %s and %s", p, o, c.Ref)
			}
			owner[p] = c.Ref
		}
	}
}
