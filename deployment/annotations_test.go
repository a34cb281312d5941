package deployment

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/backstage"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/config"
)

var annT0 = time.Date(2026, 1, 10, 10, 0, 0, 0, time.UTC)

func annBuild(id, state string, md map[string]string) buildkite.Build {
	return buildkite.Build{ID: id, Number: 7, State: state, MetaData: md, WebURL: "https://buildkite.com/acme/shop/builds/7",
		URL:       "https://api.buildkite.com/v2/organizations/acme/pipelines/shop/builds/7",
		CreatedAt: ts(annT0), StartedAt: ts(annT0.Add(time.Minute)), FinishedAt: ts(annT0.Add(5 * time.Minute))}
}

func deployAnn(env, style string) buildkite.Annotation {
	return buildkite.Annotation{Context: AnnotationContextPrefix + env, Style: style}
}

type annResult struct {
	Envs     []string
	Kinds    []string
	Fallback bool
}

func classifyAnn(t *testing.T, cfg *config.Config, b buildkite.Build, anns []buildkite.Annotation, committed []string) annResult {
	t.Helper()
	in := Input{Organization: "acme", Now: annT0.Add(time.Hour),
		Pipelines: map[string]backstage.Component{"shop": {Label: "shop"}},
		Finished:  []buildkite.Build{b}}
	if anns != nil {
		in.Annotations = map[string][]buildkite.Annotation{b.ID: anns}
	}
	if committed != nil {
		in.Committed = func(id string) []string {
			if id == b.ID {
				return committed
			}
			return nil
		}
	}
	res := NewClassifier(cfg).Classify(in)
	var out annResult
	for _, r := range res.Records {
		out.Envs = append(out.Envs, r.Environment)
	}
	for _, f := range res.Annotations {
		if f.Pipeline != "shop" || f.BuildNumber != 7 || f.Detail == "" {
			t.Errorf("finding %+v", f)
		}
		out.Kinds = append(out.Kinds, f.Kind)
	}
	out.Fallback = res.EnvironmentFallback["shop"]
	return out
}

func TestAnnotationEnvironmentRule(t *testing.T) {
	cfg := config.Default()
	for _, tc := range []struct {
		name      string
		state     string
		md        map[string]string
		anns      []buildkite.Annotation
		committed []string
		want      annResult
	}{
		{name: "no annotations read: the default", state: "passed",
			want: annResult{Envs: []string{"production"}, Fallback: true}},
		{name: "annotation, through the alias table", state: "passed", anns: []buildkite.Annotation{deployAnn("stg", "success")},
			want: annResult{Envs: []string{"staging"}}},
		{name: "other contexts are not deployments", state: "passed", anns: []buildkite.Annotation{{Context: "coverage", Style: "error"}, {Context: "deployment-", Style: "success"}},
			want: annResult{Envs: []string{"production"}, Fallback: true}},
		{name: "two environments, one alias twice", state: "passed",
			anns: []buildkite.Annotation{deployAnn("prod", "success"), deployAnn("dev", "success"), deployAnn("live", "success")},
			want: annResult{Envs: []string{"development", "production"}}},
		{name: "meta-data beats the annotation, which is a finding", state: "passed", md: map[string]string{"environment": "staging"},
			anns: []buildkite.Annotation{deployAnn("production", "success")},
			want: annResult{Envs: []string{"staging"}, Kinds: []string{FindingMetaData}}},
		{name: "meta-data and annotation agree through aliases", state: "passed", md: map[string]string{"environment": "prd"},
			anns: []buildkite.Annotation{deployAnn("live", "success")},
			want: annResult{Envs: []string{"production"}}},
		{name: "deployed keys beat the annotation", state: "passed", md: map[string]string{"a:dev:deployed": "true"},
			anns: []buildkite.Annotation{deployAnn("staging", "info")},
			want: annResult{Envs: []string{"development"}, Kinds: []string{FindingMetaData}}},
		{name: "annotation beats the slug and the default", state: "failed", anns: []buildkite.Annotation{deployAnn("staging", "error")},
			want: annResult{Envs: []string{"staging"}}},
		{name: "success style on a failed build", state: "failed", anns: []buildkite.Annotation{deployAnn("staging", "success")},
			want: annResult{Envs: []string{"staging"}, Kinds: []string{FindingOutcome}}},
		{name: "error style on a passed build", state: "passed", anns: []buildkite.Annotation{deployAnn("staging", "error")},
			want: annResult{Envs: []string{"staging"}, Kinds: []string{FindingOutcome}}},
		{name: "read after commit: the record stays, a finding", state: "passed", anns: []buildkite.Annotation{deployAnn("staging", "success")},
			committed: []string{"production"},
			want:      annResult{Envs: []string{"production"}, Kinds: []string{FindingAfterCommit}}},
		{name: "committed with the annotation, read again: no finding", state: "passed", anns: []buildkite.Annotation{deployAnn("staging", "success")},
			committed: []string{"staging"},
			want:      annResult{Envs: []string{"staging"}}},
		{name: "committed with the annotation, not readable now: stays", state: "passed",
			committed: []string{"staging"},
			want:      annResult{Envs: []string{"staging"}, Fallback: true}},
		{name: "meta-data is never pinned", state: "passed", md: map[string]string{"environment": "dev"},
			committed: []string{"staging"},
			want:      annResult{Envs: []string{"development"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := classifyAnn(t, cfg, annBuild("b1", tc.state, tc.md), tc.anns, tc.committed)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

// A build deploying to two environments makes two records; its finding is reported once.
func TestAnnotationFindingOncePerBuild(t *testing.T) {
	b := annBuild("b1", "passed", nil)
	in := Input{Organization: "acme", Pipelines: map[string]backstage.Component{"shop": {Label: "shop"}},
		Finished: []buildkite.Build{b}, Annotations: map[string][]buildkite.Annotation{"b1": {deployAnn("staging", "error"), deployAnn("prod", "error")}}}
	res := NewClassifier(nil).Classify(in)
	if len(res.Records) != 2 || len(res.Annotations) != 1 || res.AnnotationsAgree["shop"] {
		t.Errorf("records %d, findings %+v, agree %v", len(res.Records), res.Annotations, res.AnnotationsAgree)
	}
}

func TestPeopleAndNotes(t *testing.T) {
	long := strings.Repeat("ü", buildkite.MaxReleaseNotesValueLen/2) // 8 KiB, as the client keeps at most
	for _, tc := range []struct {
		name      string
		keep      bool
		md        map[string]string
		creator   *buildkite.User
		wantBy    string
		wantNotes string
	}{
		{name: "off: nothing kept", md: map[string]string{"deployed_by": "Ada", "release-notes": "notes"}, creator: &buildkite.User{Name: "Bob"}},
		{name: "deployed_by first", keep: true, md: map[string]string{"deployed_by": " Ada ", "release-notes": "* one\n* two"}, creator: &buildkite.User{Name: "Bob"},
			wantBy: "Ada", wantNotes: "* one\n* two"},
		{name: "else the creator", keep: true, creator: &buildkite.User{Name: "Bob"}, wantBy: "Bob"},
		{name: "webhook-triggered: no creator", keep: true},
		{name: "notes cut at 4 KiB, marked", keep: true, md: map[string]string{"release-notes": long},
			wantNotes: strings.Repeat("ü", (MaxReleaseNotesLen-len(ReleaseNotesCutMark))/2) + ReleaseNotesCutMark}, // on a rune boundary
		{name: "notes of exactly 4 KiB are whole", keep: true, md: map[string]string{"release-notes": strings.Repeat("n", MaxReleaseNotesLen)},
			wantNotes: strings.Repeat("n", MaxReleaseNotesLen)},
		{name: "invalid UTF-8 repaired", keep: true, md: map[string]string{"deployed_by": "A\xffda"}, wantBy: "A\uFFFDda"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config.Default()
			cfg.KeepPeopleAndNotes = tc.keep
			b := annBuild("b1", "passed", tc.md)
			b.Creator = tc.creator
			res := NewClassifier(cfg).Classify(Input{Organization: "acme", Pipelines: map[string]backstage.Component{"shop": {Label: "shop"}},
				Finished: []buildkite.Build{b}})
			if len(res.Records) != 1 {
				t.Fatalf("%d records", len(res.Records))
			}
			r := res.Records[0]
			if r.DeployedBy != tc.wantBy || r.ReleaseNotes != tc.wantNotes {
				t.Errorf("deployed_by %q, notes %d bytes %.40q…; want %q, %d bytes", r.DeployedBy, len(r.ReleaseNotes), r.ReleaseNotes, tc.wantBy, len(tc.wantNotes))
			}
			if len(r.ReleaseNotes) > MaxReleaseNotesLen {
				t.Errorf("notes of %d bytes, cap %d", len(r.ReleaseNotes), MaxReleaseNotesLen)
			}
		})
	}
}
