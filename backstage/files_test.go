package backstage_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/go-kit/log"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
)

func loadFiles(t *testing.T, paths ...string) (backstage.Result, error) {
	t.Helper()
	return backstage.NewFileSource(paths, log.NewNopLogger()).Load(context.Background())
}

// labels returns "label=pipeline,pipeline" per component, a compact view for comparisons.
func labels(cs []backstage.Component) []string {
	var out []string
	for _, c := range cs {
		var ps []string
		for _, p := range c.Pipelines {
			ps = append(ps, p.String())
		}
		out = append(out, c.Label+"="+strings.Join(ps, ","))
	}
	return out
}

// reasons returns "entity-or-source reason" per problem, sorted.
func reasons(ps []backstage.Problem) []string {
	var out []string
	for _, p := range ps {
		who := p.Entity
		if who == "" {
			who = p.Source
		}
		out = append(out, who+" "+string(p.Reason))
	}
	slices.Sort(out)
	return out
}

func TestFileSourceMultiDocumentAndAnnotationKeys(t *testing.T) {
	res, err := loadFiles(t, "testdata/valid/catalog-info.yaml")
	if err != nil {
		t.Fatal(err)
	}
	src := "testdata/valid/catalog-info.yaml"
	want := []backstage.Component{
		{Name: "payments", Namespace: "finance", Label: "finance/payments", Ref: "component:finance/payments",
			Owner: "group:finance/payments", Lifecycle: "production", Type: "service",
			Pipelines: []backstage.PipelineRef{{"acme", "payments-deploy"}}, Source: src},
		{Name: "monolith", Namespace: "default", Label: "monolith", Ref: "component:default/monolith",
			Owner: "team-core", System: "core", Lifecycle: "experimental", Type: "service",
			Pipelines: []backstage.PipelineRef{{"acme", "monolith-deploy-eu"}, {"acme", "monolith-deploy-us"}}, Source: src},
		{Name: "search", Namespace: "default", Label: "search", Ref: "component:default/search",
			Owner: "team-search", Type: "service",
			Pipelines: []backstage.PipelineRef{{"acme", "search"}}, Source: src},
		{Name: "shop", Namespace: "default", Label: "shop", Ref: "component:default/shop",
			Owner: "team-shop", System: "storefront", Lifecycle: "production", Type: "service", Tags: []string{"web", "checkout"},
			Pipelines: []backstage.PipelineRef{{"acme", "shop-deploy"}}, Source: src},
	}
	if diff := cmp.Diff(want, backstage.Merge(res).Components); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	if len(res.Problems) != 0 {
		t.Errorf("problems = %v, want none", res.Problems)
	}
	if got, want := reasons(res.Ignored), []string{"system:default/storefront unsupported_kind"}; !slices.Equal(got, want) {
		t.Errorf("ignored = %v, want %v", got, want)
	}
}

func TestFileSourceDirectoryWalk(t *testing.T) {
	res, err := loadFiles(t, "testdata/dir")
	if err != nil {
		t.Fatal(err)
	}
	// .hidden is skipped, notes.txt is not YAML, nested directories are walked, .yml counts.
	want := []string{"svc-a=acme/svc-a", "svc-b=acme/svc-b", "svc-b-worker=acme/svc-b-worker"}
	if diff := cmp.Diff(want, labels(res.Components)); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	if len(res.Problems) != 0 {
		t.Errorf("problems = %v", res.Problems)
	}
}

func TestFileSourceGlobs(t *testing.T) {
	for _, tc := range []struct {
		pattern string
		want    []string
	}{
		{"testdata/glob/team-*/catalog-info.yaml", []string{"glob-a=acme/glob-a", "glob-b=acme/glob-b"}},
		{"testdata/glob/**/catalog-info.yaml", []string{"glob-a=acme/glob-a", "glob-b=acme/glob-b", "glob-b-deep=acme/glob-b-deep"}},
		{"testdata/glob/team-[b]", []string{"glob-b=acme/glob-b", "glob-b-deep=acme/glob-b-deep"}}, // a glob matching a directory walks it
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			res, err := loadFiles(t, tc.pattern)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, labels(res.Components)); diff != "" {
				t.Errorf("components (-want +got):\n%s", diff)
			}
		})
	}
	t.Run("no match", func(t *testing.T) {
		res, err := loadFiles(t, "testdata/glob/nothing-*/x.yaml", "testdata/glob/team-a/catalog-info.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if got, want := reasons(res.Problems), []string{"testdata/glob/nothing-*/x.yaml unreadable_file"}; !slices.Equal(got, want) {
			t.Errorf("problems = %v, want %v", got, want)
		}
	})
}

func TestFileSourceLocations(t *testing.T) {
	res, err := loadFiles(t, "testdata/locations/root.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"loc-a=acme/loc-a", "loc-b=acme/loc-b"}, labels(res.Components)); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	// b.yaml's Location back to a.yaml is a diamond, not a cycle: no problem. The URL target and
	// the missing file are reported against the Location that names them.
	want := []string{"location:default/more unreadable_file", "location:default/more unsupported_location"}
	if diff := cmp.Diff(want, reasons(res.Problems)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	for _, p := range res.Problems {
		if !strings.HasPrefix(p.Source, "testdata/locations/root.yaml:") {
			t.Errorf("problem %v: source should be the Location's file and line", p)
		}
	}
}

func TestFileSourceLocationCycle(t *testing.T) {
	res, err := loadFiles(t, "testdata/cycle/one.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"cycle-one=acme/cycle-one", "cycle-two=acme/cycle-two"}, labels(res.Components)); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	if len(res.Problems) != 1 || res.Problems[0].Reason != backstage.ReasonLocationCycle {
		t.Fatalf("problems = %v, want one location_cycle", res.Problems)
	}
	p := res.Problems[0]
	if p.Source != "testdata/cycle/two.yaml:10" || !strings.Contains(p.Message, "(testdata/cycle/one.yaml → testdata/cycle/two.yaml → testdata/cycle/one.yaml)") {
		t.Errorf("cycle problem = %+v; want it at the closing Location (two.yaml:10) showing the chain", p)
	}
}

func TestFileSourceValidation(t *testing.T) {
	for _, tc := range []struct {
		file     string
		want     []string // components kept
		problems []string
		contains map[string]string // entity -> text the message must contain (the fix)
	}{
		{
			file: "testdata/invalid/annotations.yaml",
			want: []string{"still-works=acme/still-works"},
			problems: []string{
				"component:default/empty-org invalid_annotation",
				"component:default/empty-pipeline invalid_annotation",
				"component:default/empty-value invalid_annotation",
				"component:default/extra-slash invalid_annotation",
				"component:default/no-slash invalid_annotation",
				"component:default/not-a-string invalid_annotation",
				"component:default/one-bad-of-two invalid_annotation",
				"component:default/spaces invalid_annotation",
				"component:default/trailing-comma invalid_annotation",
				"component:default/underscore invalid_annotation",
				"component:default/upper-case invalid_annotation",
				"component:default/url invalid_annotation",
			},
			contains: map[string]string{
				"component:default/no-slash":       `write <org-slug>/shop-deploy`,
				"component:default/extra-slash":    `more than one "/"`,
				"component:default/empty-org":      "empty organization slug",
				"component:default/empty-pipeline": "empty pipeline slug",
				"component:default/upper-case":     `slugs are lower case: "acme"`,
				"component:default/spaces":         "has spaces",
				"component:default/underscore":     `has '_'`,
				"component:default/url":            `write only the "acme/shop-deploy" part`,
				"component:default/not-a-string":   "must be a string",
				"component:default/empty-value":    "the value is empty",
				"component:default/trailing-comma": "remove the extra comma",
				"component:default/one-bad-of-two": `"acme/Bad"`,
			},
		},
		{
			file:     "testdata/invalid/missing-name.yaml",
			problems: []string{"component:default/<no name> missing_name", "component:default/   missing_name"},
		},
		{
			file: "testdata/invalid/unknown-api-version.yaml",
			problems: []string{
				"component:default/from-the-future unknown_api_version",
				"component:default/no-api-version unknown_api_version",
				"location:default/strange-location unknown_api_version",
			},
			contains: map[string]string{
				"component:default/from-the-future": `"backstage.io/v2" is not one of backstage.io/v1alpha1, backstage.io/v1beta1`,
				"component:default/no-api-version":  "apiVersion is missing",
				"location:default/strange-location": "its targets were not read",
			},
		},
		{
			file:     "testdata/invalid/malformed.yaml",
			want:     []string{"before-the-error=acme/before-the-error"},
			problems: []string{"testdata/invalid/malformed.yaml:14 malformed_yaml"},
		},
		{
			file: "testdata/invalid/invalid-entity.yaml",
			problems: []string{
				"<no kind>:default/no-kind invalid_entity",
				"component:default/owner-is-a-list invalid_entity",
				"component:default/tags-not-a-list invalid_entity",
				"testdata/invalid/invalid-entity.yaml:26 malformed_yaml",
			},
		},
	} {
		t.Run(filepath.Base(tc.file), func(t *testing.T) {
			res, err := loadFiles(t, tc.file)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, labels(res.Components)); diff != "" {
				t.Errorf("components (-want +got):\n%s", diff)
			}
			want := slices.Clone(tc.problems)
			slices.Sort(want)
			if diff := cmp.Diff(want, reasons(res.Problems)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			for _, p := range res.Problems {
				if !strings.HasPrefix(p.Source, tc.file+":") {
					t.Errorf("problem %v: source %q should be file:line", p, p.Source)
				}
				if want, ok := tc.contains[p.Entity]; ok && !strings.Contains(p.Message, want) {
					t.Errorf("problem for %s: message %q does not contain %q", p.Entity, p.Message, want)
				}
			}
		})
	}
}

func TestFileSourceUnreadable(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "good.yaml")
	writeComponent(t, good, "good", "acme/good")
	// A dangling symlink is a file the walk finds but cannot read (permissions do not stop root).
	if err := os.Symlink(filepath.Join(dir, "gone.yaml"), filepath.Join(dir, "dangling.yaml")); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.yaml")

	res, err := loadFiles(t, dir, missing)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"good=acme/good"}, labels(res.Components)); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	want := []string{filepath.Join(dir, "dangling.yaml") + " unreadable_file", missing + " unreadable_file"}
	if diff := cmp.Diff(want, reasons(res.Problems)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}

	// When nothing at all can be read, Load fails so that the caller keeps its last good catalog.
	res, err = loadFiles(t, missing, filepath.Join(dir, "nope-*.yaml"))
	if err == nil {
		t.Fatalf("Load of only missing files succeeded: %+v", res)
	}
	if len(res.Problems) != 2 || len(res.Components) != 0 {
		t.Errorf("failed Load result = %+v; want the two problems and no components", res)
	}
}

func TestMergeDuplicatePipelinesIsDeterministic(t *testing.T) {
	var first []string
	for _, order := range [][]string{
		{"testdata/duplicates/a.yaml", "testdata/duplicates/b.yaml"},
		{"testdata/duplicates/b.yaml", "testdata/duplicates/a.yaml"},
	} {
		res, err := backstage.Load(context.Background(), backstage.NewFileSource(order, log.NewNopLogger()))
		if err != nil {
			t.Fatal(err)
		}
		// alpha has the smallest ref and keeps acme/shared; beta is left with nothing and
		// disappears; zeta keeps its own pipeline.
		if diff := cmp.Diff([]string{"alpha=acme/shared", "zeta=acme/zeta"}, labels(res.Components)); diff != "" {
			t.Errorf("%v: components (-want +got):\n%s", order, diff)
		}
		got := reasons(res.Problems)
		want := []string{"component:default/beta duplicate_pipeline", "component:default/zeta duplicate_pipeline"}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("%v: problems (-want +got):\n%s", order, diff)
		}
		for _, p := range res.Problems {
			// Both claimants are named, so either team can act.
			if !strings.Contains(p.Message, "component:default/alpha") || !strings.Contains(p.Message, p.Entity) {
				t.Errorf("problem %q does not name both components", p.Message)
			}
		}
		if first == nil {
			first = labels(res.Components)
		} else if !slices.Equal(first, labels(res.Components)) {
			t.Errorf("result depends on file order: %v vs %v", first, labels(res.Components))
		}
	}
}

func TestMergeDuplicateEntity(t *testing.T) {
	res, err := backstage.Load(context.Background(),
		backstage.NewFileSource([]string{"testdata/duplicates/a.yaml", "testdata/same-entity.yaml"}, log.NewNopLogger()))
	if err != nil {
		t.Fatal(err)
	}
	var alpha *backstage.Component
	for i := range res.Components {
		if res.Components[i].Name == "alpha" || res.Components[i].Name == "Alpha" {
			if alpha != nil {
				t.Fatal("the same entity ref appears twice")
			}
			alpha = &res.Components[i]
		}
	}
	if alpha == nil || alpha.Owner != "team-a" {
		t.Fatalf("alpha = %+v, want the first definition (owner team-a)", alpha)
	}
	want := []string{"component:default/Alpha duplicate_entity", "component:default/zeta duplicate_pipeline"}
	if diff := cmp.Diff(want, reasons(res.Problems)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestMergeDoesNotModifyInputs(t *testing.T) {
	in := backstage.Result{Components: []backstage.Component{
		{Ref: "component:default/b", Label: "b", Pipelines: []backstage.PipelineRef{{"acme", "x"}, {"acme", "y"}}},
		{Ref: "component:default/a", Label: "a", Pipelines: []backstage.PipelineRef{{"acme", "x"}}},
	}}
	before := cmp.Diff(nil, in)
	backstage.Merge(in)
	if after := cmp.Diff(nil, in); after != before {
		t.Errorf("Merge modified its input:\n%s", after)
	}
	if got := labels(backstage.Merge(in).Components); !slices.Equal(got, []string{"a=acme/x", "b=acme/y"}) {
		t.Errorf("merged = %v", got)
	}
}

func TestParsePipelineRefs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []backstage.PipelineRef
	}{
		{"acme/deploy", []backstage.PipelineRef{{"acme", "deploy"}}},
		{" acme/deploy-eu ,acme/deploy-us", []backstage.PipelineRef{{"acme", "deploy-eu"}, {"acme", "deploy-us"}}},
		{"my-org-2/pipeline-3", []backstage.PipelineRef{{"my-org-2", "pipeline-3"}}},
	} {
		got, err := backstage.ParsePipelineRefs(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
			t.Errorf("%q (-want +got):\n%s", tc.in, diff)
		}
	}
	for _, in := range []string{"", "acme", "acme/a/b", "/a", "a/", "ACME/a", "acme/a b", "acme/a_b", "acme/a.b", "acme/-a", "acme/a,", "buildkite.com/acme/a", "acme/é"} {
		if got, err := backstage.ParsePipelineRefs(in); err == nil {
			t.Errorf("%q parsed as %v, want an error", in, got)
		}
	}
}

func writeComponent(t testing.TB, path, name, pipelines string) {
	t.Helper()
	doc := "apiVersion: backstage.io/v1alpha1\nkind: Component\nmetadata:\n  name: " + name +
		"\n  annotations:\n    buildkite.com/pipeline-slug: " + pipelines + "\nspec:\n  owner: team\n"
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestFileSourcePreFilter: a file that looks like a Backstage entity and does not parse is a
// malformed_yaml problem at its line, even when the parser stopped before any annotation (there
// is none in broken-entity.yaml), while broken files that are plainly not entities (a Kubernetes
// manifest labelled for Backstage, a ConfigMap embedding an entity, CI pipelines, Helm values) are
// skipped without a word.
func TestFileSourcePreFilter(t *testing.T) {
	res, err := loadFiles(t, "testdata/prefilter")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"prefilter-good=acme/prefilter-good"}, labels(res.Components)); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	want := []string{
		"testdata/prefilter/broken-entity.yaml:7 malformed_yaml",
		"testdata/prefilter/flow.yaml:1 malformed_yaml",
		"testdata/prefilter/no-api-version.yaml:3 malformed_yaml",
		"testdata/prefilter/typo-api-version.yaml:4 malformed_yaml",
	}
	if diff := cmp.Diff(want, reasons(res.Problems)); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
}

func TestFileSourceNearMisses(t *testing.T) {
	res, err := loadFiles(t, "testdata/nearmiss/catalog-info.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The Location with a misspelled kind is not followed: behind-the-typo stays unread.
	if diff := cmp.Diff([]string{"lookalikes=acme/lookalikes"}, labels(res.Components)); diff != "" {
		t.Errorf("components (-want +got):\n%s", diff)
	}
	want := map[string]string{ // entity -> reason and the text the message must hold
		"component:default/dropped-letter":   `misspelled_annotation "buildkite.com/pipline-slug" (did you mean "buildkite.com/pipeline-slug"?)`,
		"component:default/capital-b":        `misspelled_annotation "Buildkite.com/pipeline-slug" (did you mean "buildkite.com/pipeline-slug"?)`,
		"component:default/shouting":         `misspelled_annotation "BUILDKITE.COM/PROJECT-SLUG" (did you mean "buildkite.com/project-slug"?)`,
		"component:default/swapped":          `misspelled_annotation "buildkite.com/porject-slug" (did you mean "buildkite.com/project-slug"?)`,
		"component:default/plural":           `misspelled_annotation "buildkite.com/pipelines" (did you mean "buildkite.com/pipeline"?)`,
		"component:default/half-right":       `misspelled_annotation "buildkite.com/project-slg" (did you mean "buildkite.com/project-slug"?)`,
		"compnent:default/kind-typo":         `misspelled_kind did you mean "Component"?`,
		"component:default/lower-case-kind":  `misspelled_kind did you mean "Component"?`,
		"locaton:default/kind-typo-location": `misspelled_kind its targets were not read; did you mean "Location"?`,
	}
	got := map[string]string{}
	for _, p := range res.Problems {
		if !strings.HasPrefix(p.Source, "testdata/nearmiss/catalog-info.yaml:") {
			t.Errorf("problem %v: source should be file:line", p)
		}
		reason, text, _ := strings.Cut(want[p.Entity], " ")
		if string(p.Reason) == reason && strings.Contains(p.Message, text) {
			got[p.Entity] = want[p.Entity]
		} else {
			got[p.Entity] = string(p.Reason) + " " + p.Message
		}
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("problems (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"template:default/not-a-typo unsupported_kind"}, reasons(res.Ignored)); diff != "" {
		t.Errorf("ignored (-want +got):\n%s", diff)
	}
}

func TestEditDistance(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"buildkite.com/pipeline-slug", "buildkite.com/pipeline-slug", 0},
		{"buildkite.com/pipline-slug", "buildkite.com/pipeline-slug", 1},   // deletion
		{"buildkite.com/pipeline-sluug", "buildkite.com/pipeline-slug", 1}, // insertion
		{"buildkite.com/pipeline-slog", "buildkite.com/pipeline-slug", 1},  // substitution
		{"buildkite.com/pipeline-slgu", "buildkite.com/pipeline-slug", 1},  // transposition
		{"biuldkite.com/pipline-slug", "buildkite.com/pipeline-slug", 2},
		{"buildkite.com/pl-slug", "buildkite.com/pipeline-slug", 3}, // more than the limit
		{"github.com/project-slug", "buildkite.com/project-slug", 3},
		{"compnent", "component", 1},
		{"buildkíte.com/pipeline", "buildkite.com/pipeline", 1}, // runes, not bytes
		{"", "ab", 2},
		{"abc", "", 3},
	} {
		if got := backstage.EditDistance(tc.a, tc.b, 2); got != tc.want {
			t.Errorf("EditDistance(%q, %q, 2) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestMergeDuplicateComponentLabel: two entities whose labels collide (names that differ only in
// bytes that are not UTF-8, "team/shop" in the default namespace and "shop" in namespace team)
// keep the first by entity ref, whatever the file order, and the problem names both.
func TestMergeDuplicateComponentLabel(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile("testdata/labels/catalog-info.yaml")
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(data), "\n---\n")
	slices.Reverse(docs)
	if err := os.WriteFile(filepath.Join(dir, "reversed.yaml"), []byte(strings.Join(docs, "\n---\n")), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"testdata/labels/catalog-info.yaml", filepath.Join(dir, "reversed.yaml")} {
		t.Run(filepath.Base(path), func(t *testing.T) {
			res, err := backstage.Load(context.Background(), backstage.NewFileSource([]string{path}, log.NewNopLogger()))
			if err != nil {
				t.Fatal(err)
			}
			want := []string{"svc\uFFFD=acme/svc-fe", "team/shop=acme/shop-a", "unique=acme/unique"}
			if diff := cmp.Diff(want, labels(res.Components)); diff != "" {
				t.Errorf("components (-want +got):\n%s", diff)
			}
			for _, c := range res.Components {
				if !utf8.ValidString(c.Label) {
					t.Errorf("label %q is not valid UTF-8", c.Label)
				}
			}
			wantProblems := []string{
				"component:default/svc\uFFFD duplicate_component_label",
				"component:team/shop duplicate_component_label",
			}
			if diff := cmp.Diff(wantProblems, reasons(res.Problems)); diff != "" {
				t.Errorf("problems (-want +got):\n%s", diff)
			}
			for _, p := range res.Problems {
				for _, both := range [][]string{
					{`"component:default/svc\xfe"`, `"component:default/svc\xff"`},
					{"component:default/team/shop", "component:team/shop"},
				} {
					if strings.Contains(p.Message, both[1]) && !strings.Contains(p.Message, both[0]) {
						t.Errorf("problem %q does not name both entities %v", p.Message, both)
					}
				}
			}
		})
	}
}

// TestProblemsAreBounded: an entity with a megabyte name is a problem, and neither the problem nor
// anything kept holds the megabyte.
func TestProblemsAreBounded(t *testing.T) {
	huge := strings.Repeat("x", 1<<20)
	file := filepath.Join(t.TempDir(), "huge.yaml")
	writeComponent(t, file, huge, "acme/huge")
	res, err := loadFiles(t, file)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Components) != 0 || len(res.Problems) != 1 || res.Problems[0].Reason != backstage.ReasonInvalidEntity {
		t.Fatalf("result = %d components, problems %v; want one invalid_entity", len(res.Components), reasons(res.Problems))
	}
	p := res.Problems[0]
	if len(p.Entity) > 1024 || len(p.Message) > 4096 || len(p.Source) > 1024 {
		t.Errorf("problem fields of %d, %d and %d bytes", len(p.Entity), len(p.Message), len(p.Source))
	}
}
