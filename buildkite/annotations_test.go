package buildkite

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/internal/testenv"
)

func annotationsJSON(n int, item func(i int) string) string {
	parts := make([]string, 0, n)
	for i := 1; i <= n; i++ {
		parts = append(parts, item(i))
	}
	return "[" + strings.Join(parts, ",") + "]"
}

func TestListAnnotationsRequest(t *testing.T) {
	s := &script{answers: []answer{{body: `[{"id":"a1","context":"deployment-prod","style":"success","scope":"build","job_id":null,"priority":3,` +
		`"created_at":"2026-01-10T10:11:00.000Z","updated_at":"2026-01-10T10:11:00.000Z"}]`}}}
	c := newTestClient(t, s, Config{Registerer: newRegistry()})
	got, err := c.ListAnnotations(context.Background(), "acme", "shop-deploy", 42, ListAnnotationsOptions{OmitBody: true})
	if err != nil {
		t.Fatal(err)
	}
	reqs := s.requests()
	if len(reqs) != 1 || reqs[0].path != "/v2/organizations/acme/pipelines/shop-deploy/builds/42/annotations" ||
		reqs[0].rawQuery != "omit_body=true&per_page=100" || reqs[0].auth != "Bearer "+testToken {
		t.Errorf("requests = %+v", reqs)
	}
	if len(got) != 1 || got[0].Context != "deployment-prod" || got[0].Style != AnnotationStyleSuccess || got[0].CreatedAt.IsZero() {
		t.Errorf("annotations = %+v", got)
	}
	for _, bad := range []struct {
		org, pipeline string
		n             int
	}{{"acme", "../x", 1}, {"", "p", 1}, {"acme", "p", 0}} {
		if _, err := c.ListAnnotations(context.Background(), bad.org, bad.pipeline, bad.n, ListAnnotationsOptions{}); err == nil {
			t.Errorf("ListAnnotations(%q, %q, %d) = nil error", bad.org, bad.pipeline, bad.n)
		}
	}
	if n := len(s.requests()); n != 1 {
		t.Errorf("invalid arguments sent %d requests", n-1)
	}
}

func TestListAnnotationsHostile(t *testing.T) {
	long := strings.Repeat("é", MaxAnnotationBodyLen) // 2 bytes a rune: twice the cap
	for _, tc := range []struct {
		name       string
		body       string
		header     map[string]string
		want       int
		dropped    float64 // annotations
		cutBodies  float64
		wantPrefix string
	}{
		{name: "too many items on one page", body: annotationsJSON(250, func(i int) string {
			return fmt.Sprintf(`{"id":"a%d","context":"c%d","style":"info"}`, i, i)
		}), want: MaxAnnotationsPerBuild, dropped: 150},
		{name: "an oversized body is cut on a rune boundary", body: `[{"id":"a","context":"deployment-prod","style":"success","body_html":"` + long + `"}]`,
			want: 1, cutBodies: 1},
		{name: "a context longer than the agent allows is dropped", body: `[{"id":"a","context":"deployment-` + strings.Repeat("x", MaxAnnotationContextLen) + `"},{"id":"b","context":"deployment-prod"}]`,
			want: 1, dropped: 1},
		{name: "a next page is left unread and counted", body: `[{"id":"a","context":"deployment-prod"}]`,
			header: map[string]string{"Link": `<http://buildkite.test/v2/organizations/acme/pipelines/p/builds/1/annotations?page=2>; rel="next"`},
			want:   1, dropped: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &script{answers: []answer{{body: tc.body, header: tc.header}}}
			logs := &testenv.LogBuffer{}
			c := newTestClient(t, s, Config{Registerer: newRegistry(), Logger: newLogfmt(logs)})
			got, err := c.ListAnnotations(context.Background(), "acme", "p", 1, ListAnnotationsOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != tc.want {
				t.Errorf("%d annotations kept, want %d", len(got), tc.want)
			}
			if d := droppedValue(c, dropAnnotations); d != tc.dropped {
				t.Errorf("dropped_total{what=annotations} = %v, want %v", d, tc.dropped)
			}
			if d := droppedValue(c, dropAnnotationBodies); d != tc.cutBodies {
				t.Errorf("dropped_total{what=annotation_bodies} = %v, want %v", d, tc.cutBodies)
			}
			for _, a := range got {
				if len(a.BodyHTML) > MaxAnnotationBodyLen || !strings.HasPrefix(long, a.BodyHTML) {
					t.Errorf("body of %d bytes kept, cap %d, not a prefix on a rune boundary", len(a.BodyHTML), MaxAnnotationBodyLen)
				}
			}
			if n := len(s.requests()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
			if tc.dropped+tc.cutBodies > 0 && strings.Count(logs.String(), "level=warn") != 1 {
				t.Errorf("want one warning for the answer:\n%s", logs.String())
			}
		})
	}
}

func TestListAnnotationsRejectsGarbage(t *testing.T) {
	for _, body := range []string{`{"message":"not an array"}`, `[{"id":1}]`, `[` + testToken + `]`} {
		s := &script{answers: []answer{{body: body}}}
		c := newTestClient(t, s, Config{Registerer: newRegistry()})
		_, err := c.ListAnnotations(context.Background(), "acme", "p", 1, ListAnnotationsOptions{})
		var de *DecodeError
		if !errors.As(err, &de) {
			t.Errorf("body %.30q: err = %v, want a *DecodeError", body, err)
		}
		if err != nil {
			assertNoToken(t, "error", err.Error())
		}
	}
}

func TestListAnnotationsErrors(t *testing.T) {
	s := &script{answers: []answer{{status: http.StatusNotFound, body: `{"message":"No build found"}`}}}
	c := newTestClient(t, s, Config{Registerer: newRegistry()})
	_, err := c.ListAnnotations(context.Background(), "acme", "p", 7, ListAnnotationsOptions{})
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("404: err = %v, want ErrNotFound", err)
	}
}

// A redirect to another origin never takes the token along, as on every other endpoint.
func TestListAnnotationsRedirectRefused(t *testing.T) {
	thief := &recorder{}
	other := httptest.NewServer(thief)
	defer other.Close()
	api := httptest.NewServer(redirectTo(http.StatusFound, func() string { return other.URL }))
	defer api.Close()
	c := newTestClient(t, nil, Config{BaseURL: api.URL + "/v2/", HTTPClient: &http.Client{}, Registerer: newRegistry()})
	_, err := c.ListAnnotations(context.Background(), "acme", "p", 1, ListAnnotationsOptions{})
	if err == nil {
		t.Fatal("redirect to another origin followed")
	}
	thief.mu.Lock()
	defer thief.mu.Unlock()
	for _, r := range thief.reqs {
		if r.Header.Get("Authorization") != "" {
			t.Errorf("the token went to %s", other.URL)
		}
	}
	assertNoToken(t, "error", err.Error())
}

func TestReleaseNotesValueLimit(t *testing.T) {
	notes := strings.Repeat("n", MaxReleaseNotesValueLen+10)
	other := strings.Repeat("v", MaxMetaDataValueLen+10)
	body := `[{"id":"b1","number":1,"meta_data":{"release-notes":"` + notes + `","other":"` + other + `"}}]`
	s := &script{answers: []answer{{body: body}}}
	c := newTestClient(t, s, Config{Registerer: newRegistry()})
	var got []Build
	if err := c.ListOrganizationBuilds(context.Background(), "acme", ListBuildsOptions{}, func(p []Build) error {
		got = append(got, p...)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := map[string]int{ReleaseNotesKey: MaxReleaseNotesValueLen, "other": MaxMetaDataValueLen}
	gotLen := map[string]int{}
	for k, v := range got[0].MetaData {
		gotLen[k] = len(v)
	}
	if diff := cmp.Diff(want, gotLen); diff != "" {
		t.Errorf("meta-data value lengths (-want +got):\n%s", diff)
	}
	if d := droppedValue(c, dropMetaDataValues); d != 2 {
		t.Errorf("dropped_total{what=meta_data_values} = %v, want 2", d)
	}
}
