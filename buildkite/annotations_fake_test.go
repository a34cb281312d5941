package buildkite_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite"
	"github.com/buildkite-deployments-exporter/buildkite_deployments_exporter/buildkite/buildkitetest"
)

func TestFakeAnnotations(t *testing.T) {
	f := buildkitetest.New()
	f.SetToken(token, allScopes...)
	reg := prometheus.NewPedanticRegistry()
	c := overHTTP(t, f, buildkite.Config{Registerer: reg})
	at := time.Date(2026, 1, 10, 10, 0, 0, 0, time.UTC)
	b := f.AddBuild("acme", "shop-deploy", buildkite.Build{State: "passed", FinishedAt: buildkite.Timestamp{Time: at}})
	ctx := context.Background()

	if _, err := f.Annotate("acme", "shop-deploy", b.Number, buildkite.Annotation{Context: "deployment-prod", Style: "info", BodyHTML: "<p>Deploying</p>"}, false); err != nil {
		t.Fatal(err)
	}
	// The same context replaces it (buildkite-agent annotate), keeping its id; append appends.
	first, _ := f.Annotate("acme", "shop-deploy", b.Number, buildkite.Annotation{Context: "deployment-prod", Style: "success", BodyHTML: "<p>Deployed 1.2.3</p>"}, false)
	if _, err := f.Annotate("acme", "shop-deploy", b.Number, buildkite.Annotation{Context: "deployment-prod", Style: "success", BodyHTML: "<p>to production</p>"}, true); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Annotate("acme", "shop-deploy", b.Number, buildkite.Annotation{Context: "tests", Scope: "job", JobID: "j1", Style: "error"}, false); err != nil {
		t.Fatal(err)
	}
	got, err := c.ListAnnotations(ctx, "acme", "shop-deploy", b.Number, buildkite.ListAnnotationsOptions{})
	if err != nil {
		t.Fatal(err)
	}
	want := []buildkite.Annotation{{ID: first.ID, Context: "deployment-prod", Style: "success", Scope: "build", Priority: 3,
		BodyHTML: "<p>Deployed 1.2.3</p><p>to production</p>", CreatedAt: first.CreatedAt}}
	if diff := cmp.Diff(want, got, cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".UpdatedAt" }, cmp.Ignore())); diff != "" {
		t.Errorf("annotations (-want +got):\n%s", diff)
	}
	got, err = c.ListAnnotations(ctx, "acme", "shop-deploy", b.Number, buildkite.ListAnnotationsOptions{OmitBody: true})
	if err != nil || len(got) != 1 || got[0].BodyHTML != "" {
		t.Errorf("omit_body: %+v, %v", got, err)
	}
	reqs := f.Requests()
	if last := reqs[len(reqs)-1]; last.Route != buildkitetest.RouteAnnotations || last.Query.Get("omit_body") != "true" {
		t.Errorf("last request = %+v", last)
	}

	// A build with more than a page: the client keeps the first page and counts the rest once.
	many := f.AddBuild("acme", "shop-deploy", buildkite.Build{State: "passed", FinishedAt: buildkite.Timestamp{Time: at}})
	for i := range 150 {
		if _, err := f.Annotate("acme", "shop-deploy", many.Number, buildkite.Annotation{Context: fmt.Sprintf("c%03d", i)}, false); err != nil {
			t.Fatal(err)
		}
	}
	got, err = c.ListAnnotations(ctx, "acme", "shop-deploy", many.Number, buildkite.ListAnnotationsOptions{OmitBody: true})
	if err != nil || len(got) != buildkite.MaxAnnotationsPerBuild || got[0].Context != "c000" {
		t.Errorf("150 annotations: kept %d (%v), want the first %d", len(got), err, buildkite.MaxAnnotationsPerBuild)
	}
	if v := dropped(t, reg, "annotations"); v != 1 {
		t.Errorf("dropped_total{what=annotations} = %v, want 1 (the unread page)", v)
	}

	if _, err := c.ListAnnotations(ctx, "acme", "shop-deploy", 999, buildkite.ListAnnotationsOptions{}); !errors.Is(err, buildkite.ErrNotFound) {
		t.Errorf("missing build: %v, want ErrNotFound", err)
	}
	// Scope read_builds, as the builds listings.
	f.SetToken(token, buildkite.ScopeReadPipelines)
	if _, err := c.ListAnnotations(ctx, "acme", "shop-deploy", b.Number, buildkite.ListAnnotationsOptions{}); !errors.Is(err, buildkite.ErrForbidden) {
		t.Errorf("without read_builds: %v, want ErrForbidden", err)
	}
}
